"""The evaluation harness core: any embedder, one protocol per test length, metrics.

An :class:`Embedder` is all the harness knows of a model: a name, an identity,
a batch ``embed`` for test crops and a ``pool`` that turns enrollment speech
into a voiceprint. The service's own models go through the service's own code
(``load_encoder``, the inference batcher and ``pool_speech``), so what is measured is
what is served.

Each step is a separate function so that callers can swap one: scoring
(``Scorer``, cosine by default; normalisation and calibration plug in here),
non-target sampling, and the metrics over raw target/non-target scores.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biometrics.audio.decode import Samples
from biometrics.embedding import InferenceBatcher, SpeakerEncoder, Urgency, load_encoder
from biometrics.embedding.identity import ModelIdentity
from biometrics.embedding.pooling import Embed, Vectors, pool_speech
from biometrics.embedding.precision import PRECISIONS
from biometrics.evaluation.metrics import Scores, bootstrap_interval, eer, frr_at_far, min_dcf
from biometrics.evaluation.protocol import (
    Pool,
    Protocol,
    SpeakerSpeech,
    Trials,
    build_protocol,
    cosine_trials,
    embed_tests,
)
from biometrics.training.folders import ecapa_hyperparams, write_initialised_folder

logger = logging.getLogger(__name__)

RESEMBLYZER = "resemblyzer"
RANDOM_PREFIX = "random:"
PRECISION_SEPARATOR = "@"  # bundled@onnx: the bundled model as BIOMETRICS_INFERENCE_PRECISION=onnx
# Below this many target trials a bootstrap interval says more about the
# resampling than about the system.
MIN_TARGETS_FOR_INTERVAL = 10

Scorer = Callable[[Protocol, Vectors, Vectors], Trials]  # voiceprints, tests -> trials


@dataclasses.dataclass(frozen=True)
class Embedder:
    """A model as the harness sees it."""

    name: str  # what the user asked for: a source, "resemblyzer", "random:256"
    identity: dict[str, str]
    embed: Embed  # crops -> (n, dim) unit vectors
    pool: Pool  # enrollment speech -> unit voiceprint


def service_embedder(
    source: str,
    cache_dir: Path,
    *,
    threads: int = 2,
    name: str | None = None,
    precision: str = "fp32",
) -> Embedder:
    """A model as the service runs it: loaded by ``load_encoder``, voiceprints by
    ``pool_speech``."""
    encoder = load_encoder(source, cache_dir, threads=threads, precision=precision)
    return encoder_embedder(encoder, name or source)


def encoder_embedder(encoder: SpeakerEncoder, name: str) -> Embedder:
    """An already loaded service model, run through the service's batcher (its own
    queue, so bulk work is never refused: the harness waits for each call)."""
    batcher = InferenceBatcher(encoder)

    def embed(crops: list[Samples]) -> Vectors:
        return batcher.embed_now(crops, Urgency.BULK)

    return Embedder(
        name=name,
        identity=encoder.identity.as_dict(),
        embed=embed,
        pool=lambda speech: pool_speech(embed, speech)[0],
    )


def random_embedder(channels: int, *, seed: int = 0, threads: int = 2) -> Embedder:
    """A random-init ECAPA of ``channels`` width, written in the production layout and
    loaded through the service's path: the floor any trained model must beat. The
    identity names the spec rather than the temporary folder, so seeded runs agree."""
    name = f"{RANDOM_PREFIX}{channels}"
    with tempfile.TemporaryDirectory(prefix="biometrics-random-") as workdir:
        folder = write_initialised_folder(
            Path(workdir) / f"ecapa-{channels}", ecapa_hyperparams(channels=channels), seed=seed
        )
        embedder = service_embedder(str(folder), Path(workdir) / "cache", threads=threads)
    identity = ModelIdentity(name, embedder.identity["sha256"]).as_dict()
    return dataclasses.replace(embedder, name=name, identity=identity)


def resemblyzer_embedder(*, threads: int = 2) -> Embedder:
    """The training teacher (GE2E), for comparison, as Resemblyzer itself embeds an
    utterance (sliding 1.6 s partials), for test crops and voiceprints alike."""
    import resemblyzer
    import torch

    from biometrics.training.teacher import ResemblyzerTeacher

    torch.set_num_threads(threads)
    teacher = ResemblyzerTeacher()
    weights = Path(resemblyzer.__file__).parent / "pretrained.pt"
    return Embedder(
        name=RESEMBLYZER,
        identity=ModelIdentity.of_checkpoint(RESEMBLYZER, weights).as_dict(),
        embed=lambda crops: np.stack([teacher.embed_utterance(crop) for crop in crops]),
        pool=teacher.embed_utterance,
    )


def make_embedder(spec: str, *, cache_dir: Path, threads: int = 2, seed: int = 0) -> Embedder:
    """The embedder a command-line spec names: ``resemblyzer``, ``random:<channels>``,
    or a Hugging Face id / model folder the service could load, optionally run in one
    of the service's precisions: ``bundled@onnx``."""
    if spec == RESEMBLYZER:
        return resemblyzer_embedder(threads=threads)
    if spec.startswith(RANDOM_PREFIX):
        width = spec.removeprefix(RANDOM_PREFIX)
        if not width.isdigit() or int(width) < 1:
            raise ValueError(f"{spec!r}: expected random:<channels>, e.g. random:256")
        return random_embedder(int(width), seed=seed, threads=threads)
    source, _, precision = spec.rpartition(PRECISION_SEPARATOR)
    if source and precision in PRECISIONS:
        return service_embedder(source, cache_dir, threads=threads, name=spec, precision=precision)
    return service_embedder(spec, cache_dir, threads=threads)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One model at one test length: the raw scores and what was measured on them."""

    model: dict[str, str]
    label: str
    test_seconds: float
    trials: Trials  # every test against every voiceprint
    targets: Scores  # the target scores the metrics used
    nontargets: Scores  # the (possibly sampled) non-target scores the metrics used
    metrics: dict[str, Any]
    n_speakers: int
    embed_ms_per_test: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON entry: identity, test length, metrics, counts and timing."""
        return {
            "model": self.model,
            "label": self.label,
            "test_seconds": self.test_seconds,
            **self.metrics,
            "n_speakers": self.n_speakers,
            "embed_ms_per_test": self.embed_ms_per_test,
        }


def summarise(
    targets: Scores, nontargets: Scores, *, seed: int = 0, repeats: int = 200
) -> dict[str, Any]:
    """Every reported metric from raw scores (higher means same speaker).

    FRR at a FAR below 1 / n_nontarget is measured with the threshold above every
    non-target, so it is an upper bound there, not an estimate.
    """
    value, threshold = eer(targets, nontargets)
    interval = None
    if len(targets) >= MIN_TARGETS_FOR_INTERVAL:
        interval = list(
            bootstrap_interval(
                lambda t, n: eer(t, n)[0], targets, nontargets, repeats=repeats, seed=seed
            )
        )
    return {
        "eer": value,
        "eer_threshold": threshold,
        "eer_ci": interval,
        "min_dcf_0.01": min_dcf(targets, nontargets, p_target=0.01),
        "min_dcf_0.05": min_dcf(targets, nontargets, p_target=0.05),
        "frr_at_far_1pct": frr_at_far(targets, nontargets, 0.01),
        "frr_at_far_0.1pct": frr_at_far(targets, nontargets, 0.001),
        "n_target": len(targets),
        "n_nontarget": len(nontargets),
    }


def split_scores(
    trials: Trials, *, max_nontargets: int | None = None, seed: int = 0
) -> tuple[Scores, Scores]:
    """Target and non-target scores; non-targets are a seeded sample of at most
    ``max_nontargets`` (all when None), to bound cost on many speakers."""
    nontargets = trials.nontargets
    if max_nontargets is not None and len(nontargets) > max_nontargets:
        rng = np.random.default_rng(seed)
        nontargets = nontargets[np.sort(rng.choice(len(nontargets), max_nontargets, replace=False))]
    return trials.targets, nontargets


def measurable(protocol: Protocol) -> bool:
    """Targets and non-targets both exist: some tests, and at least two speakers."""
    return bool(protocol.tests) and len(protocol.speakers) >= 2


class VoiceprintCache:
    """Voiceprints per speaker, pooled once: the enrollment does not depend on the
    test length, so every protocol of a run shares them."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._voiceprints: dict[str, Vectors] = {}

    def for_protocol(self, protocol: Protocol) -> Vectors:
        for speaker in protocol.speakers:
            if speaker not in self._voiceprints:
                speech = np.concatenate(protocol.enrollments[speaker])
                self._voiceprints[speaker] = self._pool(speech)
        return np.stack([self._voiceprints[speaker] for speaker in protocol.speakers])


def evaluate_protocol(
    embedder: Embedder,
    protocol: Protocol,
    voiceprints: VoiceprintCache,
    *,
    score: Scorer = cosine_trials,
    max_nontargets: int | None = None,
    seed: int = 0,
) -> Evaluation:
    """Embed one protocol's tests (timed), score them and measure. One crop is
    embedded untimed first: torch's first call at a new input length is slow."""
    if not measurable(protocol):
        raise ValueError(f"no trials at {protocol.test_seconds:g} s: too little speech")
    prints = voiceprints.for_protocol(protocol)
    embedder.embed([protocol.tests[0].samples])
    start = time.perf_counter()
    tests = embed_tests(protocol.tests, embedder.embed)
    elapsed_ms = (time.perf_counter() - start) * 1000
    trials = score(protocol, prints, tests)
    targets, nontargets = split_scores(trials, max_nontargets=max_nontargets, seed=seed)
    return Evaluation(
        model=embedder.identity,
        label=embedder.name,
        test_seconds=protocol.test_seconds,
        trials=trials,
        targets=targets,
        nontargets=nontargets,
        metrics=summarise(targets, nontargets, seed=seed),
        n_speakers=len(protocol.speakers),
        embed_ms_per_test=elapsed_ms / len(protocol.tests),
    )


def evaluate(
    embedder: Embedder,
    speech: Sequence[SpeakerSpeech],
    test_seconds: Sequence[float],
    *,
    enroll_seconds: float = 20.0,
    max_tests_per_speaker: int = 50,
    max_nontargets: int | None = None,
    seed: int = 0,
    score: Scorer = cosine_trials,
) -> list[Evaluation]:
    """One :class:`Evaluation` per test length, all on the same enrollments; a test
    length the data cannot supply (no crops, or under two speakers) is skipped
    with a warning rather than failing the lengths that can be measured."""
    voiceprints = VoiceprintCache(embedder.pool)
    results = []
    for seconds in test_seconds:
        protocol = build_protocol(
            speech,
            enroll_seconds=enroll_seconds,
            test_seconds=seconds,
            max_tests_per_speaker=max_tests_per_speaker,
            seed=seed,
        )
        if not measurable(protocol):
            logger.warning(
                "skipped: too little speech for this test length",
                extra={"model": embedder.name, "test_seconds": seconds},
            )
            continue
        results.append(
            evaluate_protocol(
                embedder,
                protocol,
                voiceprints,
                score=score,
                max_nontargets=max_nontargets,
                seed=seed,
            )
        )
    return results
