"""The distillation loop on a toy problem: it learns, resumes exactly, and exports a
folder the service loads. Needs the train extras (resemblyzer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from biometrics.embedding import load_encoder
from biometrics.training.data import Augmentation, CropSampler, Voice
from biometrics.training.distill import DistillConfig, Distiller
from biometrics.training.teacher import ResemblyzerTeacher
from tests.voices import synthetic_speech

pytest.importorskip("resemblyzer", reason="the teacher is a train extra")


@pytest.fixture(scope="module")
def teacher() -> ResemblyzerTeacher:
    return ResemblyzerTeacher()


def sampler() -> CropSampler:
    voices = [
        Voice(f"v{i}@1", synthetic_speech(5.0, pitch_hz=90 + 50 * i, seed=i)) for i in range(3)
    ]
    return CropSampler(voices, 4, (2.0, 2.0), Augmentation(), seed=3)


CONFIG = DistillConfig(
    channels=32,
    steps=3,
    batch_size=4,
    warmup_steps=1,
    teacher_mean_batches=2,
    checkpoint_every=1,
    eval_every=100,
    threads=1,
)


def test_a_resumed_run_matches_an_uninterrupted_one(
    teacher: ResemblyzerTeacher, tmp_path: Path
) -> None:
    whole = Distiller(CONFIG, sampler(), teacher, tmp_path / "whole")
    whole.run()
    interrupted = Distiller(
        DistillConfig(**{**CONFIG.__dict__, "steps": 2}), sampler(), teacher, tmp_path / "part"
    )
    interrupted.run()
    resumed = Distiller(CONFIG, sampler(), teacher, tmp_path / "part")
    resumed.run()
    assert resumed.step == whole.step == 3
    for (name, a), (_, b) in zip(
        whole.student.state_dict().items(), resumed.student.state_dict().items(), strict=True
    ):
        assert np.allclose(a.float().numpy(), b.float().numpy(), atol=1e-5), name


def test_the_exported_folder_loads_through_the_service_path(
    teacher: ResemblyzerTeacher, tmp_path: Path
) -> None:
    distiller = Distiller(CONFIG, sampler(), teacher, tmp_path / "work")
    distiller.run()
    folder = distiller.export(tmp_path / "model", norm_batches=2)
    encoder = load_encoder(str(folder), tmp_path / "cache")
    crop = synthetic_speech(2.0, seed=11)
    served = encoder.embed([crop])[0]
    trained = distiller.student.embed_numpy([crop])[0]
    assert float(served @ trained) > 0.999  # float16 storage costs almost nothing
    assert (folder / "label_encoder.txt").read_text().count("v1@1") == 1


def test_a_new_run_starts_from_an_exported_folder(
    teacher: ResemblyzerTeacher, tmp_path: Path
) -> None:
    first = Distiller(CONFIG, sampler(), teacher, tmp_path / "first")
    first.run()
    folder = first.export(tmp_path / "model", norm_batches=2)
    start = DistillConfig(**{**CONFIG.__dict__, "steps": 0, "init_from": str(folder)})

    second = Distiller(start, sampler(), teacher, tmp_path / "second")
    second.run()
    crop = synthetic_speech(2.0, seed=11)
    before, after = first.student.embed_numpy([crop])[0], second.student.embed_numpy([crop])[0]
    assert float(before @ after) > 0.999  # the exported weights, not fresh ones
    fresh = Distiller(CONFIG, sampler(), teacher, tmp_path / "fresh").student.embed_numpy([crop])
    # The exported folder carries its log; the new stage's log starts with that history.
    history = (folder / "train_log.jsonl").read_text()
    assert '"step": 1,' in history and second.log_path.read_text().count(history) == 1
    assert float(fresh[0] @ after) < 0.99

    others = CropSampler(sampler().voices[::-1], 4, (2.0, 2.0), Augmentation(), seed=3)
    with pytest.raises(RuntimeError, match="trained on other voices"):
        Distiller(start, others, teacher, tmp_path / "third").run()


def test_export_averages_the_last_kept_checkpoints(
    teacher: ResemblyzerTeacher, tmp_path: Path
) -> None:
    config = DistillConfig(**{**CONFIG.__dict__, "average_last": 2})
    distiller = Distiller(config, sampler(), teacher, tmp_path / "work")
    distiller.run()
    kept = distiller.kept_checkpoints()
    assert [path.name for path in kept] == ["step-000002.pt", "step-000003.pt"]
    states = [torch.load(path, weights_only=True) for path in kept]
    name = next(key for key in states[0] if key.endswith("conv.weight"))
    assert not torch.allclose(states[0][name], states[1][name])  # the steps moved it

    distiller.export(tmp_path / "model", norm_batches=2)
    averaged = distiller.student.state_dict()
    assert torch.allclose(averaged[name], (states[0][name] + states[1][name]) / 2, atol=1e-6)
    history = distiller.log_path.read_text()
    assert '"averaged_steps": [2, 3]' in history
