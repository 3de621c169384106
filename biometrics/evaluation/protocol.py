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

from biometrics.audio import SAMPLE_RATE, SpeechDetector, decode_audio

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")


@dataclasses.dataclass(frozen=True)
class SpeakerSpeech:
    speaker: str
    utterances: list[np.ndarray]  # speech-only samples of each utterance


@dataclasses.dataclass(frozen=True)
class TestCrop:
    speaker: str
    samples: np.ndarray


@dataclasses.dataclass(frozen=True)
class Protocol:
    enrollments: dict[str, list[np.ndarray]]  # speaker -> speech of the enrollment utterances
    tests: list[TestCrop]
    test_seconds: float

    @property
    def speakers(self) -> list[str]:
        return sorted(self.enrollments)


def find_speakers(folder: Path) -> dict[str, list[Path]]:
    """Audio files per speaker, by subfolder or by LibriSpeech file name."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    speakers: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        parent = path.parent
        speaker = parent.name if parent != folder else path.name.split("-")[0]
        speakers[speaker].append(path)
    return dict(speakers)


def load_speech(
    speakers: dict[str, list[Path]], detector: SpeechDetector | None = None
) -> list[SpeakerSpeech]:
    """Decode each file with the service's decoder and keep its speech frames."""
    detector = detector or SpeechDetector()
    loaded = []
    for speaker, paths in sorted(speakers.items()):
        utterances = [detector.detect(decode_audio(path.read_bytes())).speech() for path in paths]
        loaded.append(SpeakerSpeech(speaker, [u for u in utterances if len(u)]))
    return loaded


def build_protocol(
    speech: Iterable[SpeakerSpeech],
    *,
    enroll_seconds: float,
    test_seconds: float,
    max_tests_per_speaker: int = 50,
    seed: int = 0,
) -> Protocol:
    """Split each speaker's utterances into enrollment and test crops."""
    rng = np.random.default_rng(seed)
    crop = int(test_seconds * SAMPLE_RATE)
    enrollments: dict[str, list[np.ndarray]] = {}
    tests: list[TestCrop] = []
    for entry in speech:
        order = rng.permutation(len(entry.utterances))
        enrolled: list[np.ndarray] = []
        position = 0
        while position < len(order) and sum(map(len, enrolled)) < enroll_seconds * SAMPLE_RATE:
            enrolled.append(entry.utterances[order[position]])
            position += 1
        if sum(map(len, enrolled)) < enroll_seconds * SAMPLE_RATE:
            continue
        crops = [
            utterance[start : start + crop]
            for utterance in (entry.utterances[i] for i in order[position:])
            for start in range(0, len(utterance) - crop + 1, crop)
        ]
        if not crops:
            continue
        chosen = rng.permutation(len(crops))[:max_tests_per_speaker]
        enrollments[entry.speaker] = enrolled
        tests.extend(TestCrop(entry.speaker, crops[i]) for i in sorted(chosen))
    return Protocol(enrollments=enrollments, tests=tests, test_seconds=test_seconds)


@dataclasses.dataclass(frozen=True)
class Trials:
    """Scores of every test crop against every enrolled speaker."""

    scores: np.ndarray  # (n_tests, n_speakers)
    is_target: np.ndarray  # same shape, bool

    @property
    def targets(self) -> np.ndarray:
        return self.scores[self.is_target]

    @property
    def nontargets(self) -> np.ndarray:
        return self.scores[~self.is_target]


def embed_protocol(
    protocol: Protocol, pool: Callable[[np.ndarray], np.ndarray], batch_embed: Callable
) -> tuple[np.ndarray, np.ndarray]:
    """Voiceprints (one per speaker, by ``pool``) and test embeddings (by ``batch_embed``)."""
    voiceprints = np.stack(
        [pool(np.concatenate(protocol.enrollments[s])) for s in protocol.speakers]
    )
    tests = []
    for start in range(0, len(protocol.tests), 32):
        batch = [test.samples for test in protocol.tests[start : start + 32]]
        tests.append(batch_embed(batch))
    return voiceprints, np.concatenate(tests)


def cosine_trials(protocol: Protocol, voiceprints: np.ndarray, tests: np.ndarray) -> Trials:
    speakers = protocol.speakers
    scores = tests @ voiceprints.T
    is_target = np.array(
        [[test.speaker == speaker for speaker in speakers] for test in protocol.tests]
    )
    return Trials(scores=scores, is_target=is_target)
