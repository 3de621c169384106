"""Knowledge distillation of a speaker encoder into SpeechBrain's ECAPA-TDNN.

The student hears an augmented crop and learns, through a projection used
only in training, to reproduce the teacher's embedding of the clean crop
(centred: the teacher's embeddings share a large mean), to reproduce the
batch's similarity matrix, and to classify the crop's voice with an
additive-angular-margin loss. The student is built from the same
hyperparams.yaml the exported folder carries, so it is exactly the model the
service later loads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from biometrics.audio.decode import Samples
from biometrics.embedding.folder import CLASSIFIER_CHECKPOINT, EMBEDDING_CHECKPOINT, LABEL_ENCODER
from biometrics.embedding.pooling import Vectors, pool_speech
from biometrics.evaluation.metrics import eer
from biometrics.evaluation.protocol import Protocol, cosine_trials, embed_protocol
from biometrics.training.data import CropSampler
from biometrics.training.folders import Modules, ecapa_hyperparams, write_model_folder
from biometrics.training.teacher import ResemblyzerTeacher

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"  # in the work folder, and copied into the exported folder


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    seed: int = 1234
    channels: int = 256
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 2e-5
    cosine_weight: float = 1.0
    similarity_weight: float = 2.0
    margin_weight: float = 0.2
    margin: float = 0.2
    margin_scale: float = 30.0
    teacher_mean_batches: int = 20
    eval_every: int = 100
    checkpoint_every: int = 50
    threads: int = 2
    device: str = "cpu"  # or "cuda": the student and the teacher run there
    # A model folder (an earlier export) whose embedding network and classifier the
    # run starts from instead of random weights: a new schedule over a trained student.
    init_from: str = ""
    # Export the mean of the last N checkpoints' weights (0: the last alone): an average
    # over the end of the schedule usually sits in a flatter, better-generalising spot.
    average_last: int = 0


class Student(torch.nn.Module):
    """The inference modules of the exported folder, plus a training-only projection."""

    def __init__(self, channels: int, n_voices: int, teacher_dimension: int) -> None:
        super().__init__()
        self.hyperparams = ecapa_hyperparams(channels=channels, n_classes=n_voices)
        modules: Modules = load_hyperpyyaml(self.hyperparams)
        self.modules_by_name = modules
        self.compute_features: torch.nn.Module = modules["compute_features"]
        self.mean_var_norm: torch.nn.Module = modules["mean_var_norm"]
        self.embedding_model: torch.nn.Module = modules["embedding_model"]
        self.classifier: torch.nn.Module = modules["classifier"]
        self.projection = torch.nn.Linear(192, teacher_dimension)

    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        waves = waves.to(self.device)
        lengths = torch.ones(waves.shape[0], device=waves.device)
        features = self.mean_var_norm(self.compute_features(waves), lengths)
        embedded: torch.Tensor = self.embedding_model(features, lengths)
        return embedded.squeeze(1)

    @torch.inference_mode()
    def embed_numpy(self, waves: list[Samples]) -> Vectors:
        """Embed one at a time, as the service does for unpadded speech."""
        self.eval()
        outputs = [self(torch.from_numpy(w).unsqueeze(0)) for w in waves]
        embedded = torch.nn.functional.normalize(torch.cat(outputs), dim=-1)
        return embedded.cpu().numpy()


class Distiller:
    def __init__(
        self,
        config: DistillConfig,
        sampler: CropSampler,
        teacher: ResemblyzerTeacher,
        workdir: Path,
        development: Protocol | None = None,
    ) -> None:
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        self.config = config
        self.sampler = sampler
        self.teacher = teacher
        self.workdir = workdir
        self.development = development
        self.device = torch.device(config.device)
        self.student = Student(config.channels, len(sampler.voices), teacher.dimension)
        self.student.to(self.device)
        self.optimizer = torch.optim.AdamW(
            [p for name, p in self.student.named_parameters()],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        self.margin_loss = LogSoftmaxWrapper(
            AdditiveAngularMargin(margin=config.margin, scale=config.margin_scale)
        )
        self.teacher_mean = np.zeros(teacher.dimension, dtype=np.float32)
        self.step = 0
        self.log_path = workdir / TRAIN_LOG

    # -- schedule --------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        config = self.config
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    # -- training --------------------------------------------------------------
    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._resume():
            self._estimate_teacher_mean()
            if self.config.init_from:
                self._start_from(Path(self.config.init_from))
        started = time.monotonic()
        while self.step < self.config.steps:
            parts = self._train_step(self.step)
            self.step += 1
            if self.step % 10 == 0 or self.step == 1:
                self._log({"step": self.step, **parts, "seconds": time.monotonic() - started})
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self._save_checkpoint()
            if self.development and (
                self.step % self.config.eval_every == 0 or self.step == self.config.steps
            ):
                self._log({"step": self.step, "dev_eer": self.evaluate(self.development)})

    def _train_step(self, step: int) -> dict[str, float]:
        config = self.config
        batch = self.sampler.batch(step)
        centred = self.teacher.embed(batch.clean) - self.teacher_mean
        target = torch.nn.functional.normalize(torch.from_numpy(centred), dim=-1).to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.student.train()
        embedding = self.student(torch.from_numpy(batch.augmented))
        projected = torch.nn.functional.normalize(self.student.projection(embedding), dim=-1)
        cosine = (1 - (projected * target).sum(-1)).mean()
        off_diagonal = ~torch.eye(len(target), dtype=torch.bool, device=self.device)
        similarity = ((projected @ projected.T - target @ target.T)[off_diagonal] ** 2).mean()
        logits = self.student.classifier(embedding.unsqueeze(1))
        labels = torch.from_numpy(batch.labels).long().unsqueeze(1).to(self.device)
        margin = self.margin_loss(logits, labels)
        loss = (
            config.cosine_weight * cosine
            + config.similarity_weight * similarity
            + config.margin_weight * margin
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 5.0)
        self.optimizer.step()
        return {
            "loss": loss.item(),
            "cosine": cosine.item(),
            "similarity": similarity.item(),
            "margin": margin.item(),
            "lr": self.learning_rate(step),
        }

    def _estimate_teacher_mean(self) -> None:
        batches = [
            self.teacher.embed(self.sampler.batch(index, stream=1).clean)
            for index in range(self.config.teacher_mean_batches)
        ]
        self.teacher_mean = np.concatenate(batches).mean(axis=0).astype(np.float32)
        self._log({"teacher_mean_norm": float(np.linalg.norm(self.teacher_mean))})

    # -- evaluation ------------------------------------------------------------
    def evaluate(self, protocol: Protocol) -> float:
        self.student.eval()
        embed = self.student.embed_numpy
        voiceprints, tests = embed_protocol(protocol, lambda s: pool_speech(embed, s)[0], embed)
        trials = cosine_trials(protocol, voiceprints, tests)
        return eer(trials.targets, trials.nontargets)[0]

    # -- checkpoints -----------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.workdir / "checkpoint.pt"

    def _save_checkpoint(self) -> None:
        state = {
            "config": dataclasses.asdict(self.config),
            "step": self.step,
            "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "teacher_mean": self.teacher_mean,
            "voices": [voice.label for voice in self.sampler.voices],
        }
        partial = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, partial)
        partial.replace(self.checkpoint_path)
        if self.config.average_last:
            self.kept_folder.mkdir(exist_ok=True)
            # The weights alone: averaging needs no optimiser state.
            torch.save(self.student.state_dict(), self.kept_folder / f"step-{self.step:06d}.pt")
            for old in self.kept_checkpoints()[: -self.config.average_last]:
                old.unlink()

    @property
    def kept_folder(self) -> Path:
        return self.workdir / "kept"

    def kept_checkpoints(self) -> list[Path]:
        """The checkpoints kept for averaging, oldest first (their names sort by step)."""
        return sorted(self.kept_folder.glob("step-*.pt"))

    def _resume(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, weights_only=False, map_location=self.device)
        if state["voices"] != [voice.label for voice in self.sampler.voices]:
            raise RuntimeError(f"{self.checkpoint_path} was trained on other data; move it away")
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.teacher_mean = state["teacher_mean"]
        self.step = state["step"]
        self._log({"resumed_at_step": self.step})
        return True

    def _start_from(self, folder: Path) -> None:
        # The classifier's rows must be this run's voices, in this run's order.
        lines = (folder / LABEL_ENCODER).read_text(encoding="utf-8").splitlines()
        rows = dict(line.rsplit(" => ", 1) for line in lines if " => " in line)
        expected = {f"'{voice.label}'": str(i) for i, voice in enumerate(self.sampler.voices)}
        if any(rows.get(label) != index for label, index in expected.items()):
            raise RuntimeError(f"{folder} was trained on other voices; start without it")
        for name, checkpoint in (
            ("embedding_model", EMBEDDING_CHECKPOINT),
            ("classifier", CLASSIFIER_CHECKPOINT),
        ):
            state = torch.load(folder / checkpoint, weights_only=True, map_location=self.device)
            module: torch.nn.Module = self.student.modules_by_name[name]
            module.load_state_dict({key: value.float() for key, value in state.items()})
        self._fit_projection()
        earlier = folder / TRAIN_LOG
        if earlier.is_file():  # the folder's own history first, so the log tells all of it
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(earlier.read_text(encoding="utf-8"))
        self._log({"started_from": str(folder)})

    @torch.no_grad()
    def _fit_projection(self, batches: int = 8) -> None:
        """Least squares from the trained student's embeddings to the teacher's targets,
        so that the first steps do not push a random projection's gradients into it."""
        self.student.eval()
        inputs, targets = [], []
        for index in range(batches):
            batch = self.sampler.batch(index, stream=3)
            inputs.append(self.student(torch.from_numpy(batch.clean)))
            centred = self.teacher.embed(batch.clean) - self.teacher_mean
            targets.append(torch.nn.functional.normalize(torch.from_numpy(centred), dim=-1))
        x = torch.cat(inputs).cpu()
        design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
        solution = torch.linalg.lstsq(design, torch.cat(targets)).solution
        self.student.projection.weight.copy_(solution[:-1].T)
        self.student.projection.bias.copy_(solution[-1])

    @torch.no_grad()
    def average_kept_checkpoints(self) -> None:
        """Load the mean of the last ``average_last`` kept checkpoints' weights, with
        batch-norm statistics measured afresh for them (as stochastic weight averaging
        does: averaged weights make activations the stored statistics never saw)."""
        paths = self.kept_checkpoints()[-self.config.average_last :]
        if len(paths) < 2:
            return
        states = [torch.load(p, weights_only=True, map_location="cpu") for p in paths]
        averaged = {
            key: torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
            if value.is_floating_point()
            else value
            for key, value in states[-1].items()
        }
        self.student.load_state_dict(averaged)
        fresh = (self.sampler.batch(index, stream=4).augmented for index in range(16))
        torch.optim.swa_utils.update_bn((torch.from_numpy(b) for b in fresh), self.student)
        self.student.eval()
        entry: dict[str, object] = {
            "averaged_steps": [int(p.stem.removeprefix("step-")) for p in paths]
        }
        if self.development:
            entry["averaged_dev_eer"] = self.evaluate(self.development)
        self._log({"step": self.step, **entry})

    def _log(self, entry: dict[str, object]) -> None:
        logger.info("training", extra=entry)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    # -- export ----------------------------------------------------------------
    @torch.inference_mode()
    def export(self, folder: Path, norm_batches: int = 20) -> Path:
        """Write the student (averaged, with ``average_last``) as a model folder in the
        spkrec-ecapa-voxceleb layout."""
        if self.config.average_last:
            self.average_kept_checkpoints()
        self.student.eval()
        self.student.to("cpu")  # the folder loads on any machine
        modules = self.student.modules_by_name
        normalizer = modules["mean_var_norm_emb"]
        normalizer.train()
        for index in range(norm_batches):  # global embedding statistics, as published models have
            waves = torch.from_numpy(self.sampler.batch(index, stream=2).clean)
            embedding = self.student(waves).unsqueeze(1)
            normalizer(embedding, torch.ones(len(waves)), epoch=0)
        normalizer.eval()
        labels = [voice.label for voice in self.sampler.voices]
        write_model_folder(folder, self.student.hyperparams, modules, labels=labels, half=True)
        if self.log_path.is_file():
            shutil.copyfile(self.log_path, folder / TRAIN_LOG)
        return folder
