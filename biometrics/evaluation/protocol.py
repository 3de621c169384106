"""Verification trials from a folder of speech.

Speakers come from LibriSpeech names (``<speaker>-<chapter>-<utt>.flac``) or
from one subfolder per speaker. Each speaker is enrolled from whole
utterances until the enrollment has at least ``enroll_seconds`` of net speech;
tests are crops of ``test_seconds`` of net speech from the speaker's other
utterances. Every test is scored against every enrolled speaker: targets
against their own, non-targets against the rest. Everything is seeded.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from biometrics.audio import SAMPLE_RATE, SpeechDetector, decode_audio
from biometrics.audio.decode import Samples
from biometrics.embedding.pooling import Embed, Vectors
from biometrics.evaluation.metrics import Scores

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")

Pool = Callable[[Samples], Vectors]  # a speaker's speech -> one unit-length voiceprint


@dataclasses.dataclass(frozen=True)
class SpeakerSpeech:
    speaker: str
    utterances: list[Samples]  # speech-only samples of each utterance


@dataclasses.dataclass(frozen=True)
class TestCrop:
    speaker: str
    samples: Samples


@dataclasses.dataclass(frozen=True)
class Protocol:
    enrollments: dict[str, list[Samples]]  # speaker -> speech of the enrollment utterances
    tests: list[TestCrop]
    test_seconds: float

    @property
    def speakers(self) -> list[str]:
        return sorted(self.enrollments)


def find_speakers(folder: Path) -> dict[str, list[Path]]:
    """Audio files per speaker: the first-level subfolder names the speaker (so the
    LibriSpeech tree ``speaker/chapter/file`` groups by speaker, not chapter); files
    directly in ``folder`` are named by their LibriSpeech prefix."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    speakers: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        parts = path.relative_to(folder).parts
        speaker = parts[0] if len(parts) > 1 else path.name.split("-")[0]
        speakers[speaker].append(path)
    return dict(speakers)


def load_speech(
    speakers: dict[str, list[Path]],
    detector: SpeechDetector | None = None,
    channel: Callable[[Samples], Samples] | None = None,
) -> list[SpeakerSpeech]:
    """Decode each file with the service's decoder and keep its speech frames;
    ``channel`` (e.g. a telephone line) transforms the audio before speech detection,
    as the line would before the service hears it."""
    detector = detector or SpeechDetector()
    through = channel or (lambda samples: samples)
    loaded = []
    for speaker, paths in sorted(speakers.items()):
        utterances = [
            detector.detect(through(decode_audio(path.read_bytes()))).speech() for path in paths
        ]
        loaded.append(SpeakerSpeech(speaker, [u for u in utterances if len(u)]))
    return loaded


def build_protocol(
    speech: Iterable[SpeakerSpeech],
    *,
    enroll_seconds: float,
    test_seconds: float,
    max_tests_per_speaker: int = 50,
    seed: int = 0,
    join_utterances: bool = False,
) -> Protocol:
    """Split each speaker's utterances into enrollment and test crops.

    The enrollment depends only on ``seed`` and ``enroll_seconds`` (it draws from
    its own random stream), so protocols for different ``test_seconds`` enroll
    every speaker they share identically and differ only in their tests.
    ``join_utterances`` concatenates a speaker's test utterances before cropping,
    for tests longer than single utterances (a caller's turns joined). A speaker
    with too little speech left for a crop stays enrolled: a non-target for others.
    """
    enroll_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    crop = int(test_seconds * SAMPLE_RATE)
    enrollments: dict[str, list[Samples]] = {}
    tests: list[TestCrop] = []
    for entry in speech:
        split = choose_enrollment(entry.utterances, enroll_seconds * SAMPLE_RATE, enroll_rng)
        if split is None:
            continue
        enrolled, rest = split
        if join_utterances and rest:
            rest = [np.concatenate(rest)]
        crops = [
            utterance[start : start + crop]
            for utterance in rest
            for start in range(0, len(utterance) - crop + 1, crop)
        ]
        enrollments[entry.speaker] = enrolled
        chosen = test_rng.permutation(len(crops))[:max_tests_per_speaker]
        tests.extend(TestCrop(entry.speaker, crops[i]) for i in sorted(chosen))
    return Protocol(enrollments=enrollments, tests=tests, test_seconds=test_seconds)


def choose_enrollment(
    utterances: list[Samples], enroll_samples: float, rng: np.random.Generator
) -> tuple[list[Samples], list[Samples]] | None:
    """Whole utterances in a seeded order until ``enroll_samples`` of speech, and the
    remaining utterances (in the same order) for tests; None when there is too little.
    The order is drawn for every speaker, used or not, so later speakers do not shift."""
    order = rng.permutation(len(utterances))
    enrolled: list[Samples] = []
    position = 0
    while position < len(order) and sum(map(len, enrolled)) < enroll_samples:
        enrolled.append(utterances[order[position]])
        position += 1
    if sum(map(len, enrolled)) < enroll_samples:
        return None
    return enrolled, [utterances[i] for i in order[position:]]


@dataclasses.dataclass(frozen=True)
class Trials:
    """Scores of every test crop against every enrolled speaker."""

    scores: Scores  # (n_tests, n_speakers)
    is_target: npt.NDArray[np.bool_]  # same shape

    @property
    def targets(self) -> Scores:
        return self.scores[self.is_target]

    @property
    def nontargets(self) -> Scores:
        return self.scores[~self.is_target]


def embed_protocol(protocol: Protocol, pool: Pool, batch_embed: Embed) -> tuple[Vectors, Vectors]:
    """Voiceprints (one per speaker, by ``pool``) and test embeddings (by ``batch_embed``)."""
    return embed_voiceprints(protocol, pool), embed_tests(protocol.tests, batch_embed)


def embed_voiceprints(protocol: Protocol, pool: Pool) -> Vectors:
    """One voiceprint per enrolled speaker (in ``protocol.speakers`` order) from all
    of the speaker's enrollment speech, as the service pools an enrollment."""
    return np.stack([pool(np.concatenate(protocol.enrollments[s])) for s in protocol.speakers])


def embed_tests(tests: list[TestCrop], batch_embed: Embed, batch_size: int = 32) -> Vectors:
    """Test embeddings in batches: crops of one protocol share a length, so batches
    carry no padding, and the batch bounds memory."""
    batches = [
        batch_embed([test.samples for test in tests[start : start + batch_size]])
        for start in range(0, len(tests), batch_size)
    ]
    return np.concatenate(batches)


def cosine_trials(protocol: Protocol, voiceprints: Vectors, tests: Vectors) -> Trials:
    speakers = protocol.speakers
    scores = tests @ voiceprints.T
    is_target = np.array(
        [[test.speaker == speaker for speaker in speakers] for test in protocol.tests]
    )
    return Trials(scores=scores, is_target=is_target)
