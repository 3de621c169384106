"""Trial protocols from folders of speech: who is enrolled with what, and which crops
test them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE
from biometrics.evaluation.protocol import (
    Protocol,
    SpeakerSpeech,
    build_protocol,
    find_speakers,
    load_speech,
)
from tests.evaluation.conftest import UTTERANCES, VOICES

ENROLL_SECONDS = 8.0


@pytest.fixture(scope="module")
def speech(speech_folder: Path) -> list[SpeakerSpeech]:
    return load_speech(find_speakers(speech_folder))


def protocol(speech: list[SpeakerSpeech], test_seconds: float, seed: int = 0) -> Protocol:
    return build_protocol(
        speech, enroll_seconds=ENROLL_SECONDS, test_seconds=test_seconds, seed=seed
    )


def test_both_layouts_group_files_by_speaker(speech: list[SpeakerSpeech]) -> None:
    assert [entry.speaker for entry in speech] == sorted(VOICES)
    assert all(len(entry.utterances) == UTTERANCES for entry in speech)


def test_a_librispeech_tree_groups_by_speaker_not_chapter(tmp_path: Path) -> None:
    for speaker, chapter in (("19", "198"), ("19", "227"), ("26", "495")):
        path = tmp_path / speaker / chapter / f"{speaker}-{chapter}-0000.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert {speaker: len(paths) for speaker, paths in find_speakers(tmp_path).items()} == {
        "19": 2,
        "26": 1,
    }


def test_enrollment_reaches_the_requested_speech(speech: list[SpeakerSpeech]) -> None:
    built = protocol(speech, 1.0)
    assert built.speakers == sorted(VOICES)
    for utterances in built.enrollments.values():
        assert sum(map(len, utterances)) >= ENROLL_SECONDS * SAMPLE_RATE


@pytest.mark.parametrize("test_seconds", [1.0, 2.0])
def test_crops_have_exactly_t_seconds_from_other_utterances(
    speech: list[SpeakerSpeech], test_seconds: float
) -> None:
    built = protocol(speech, test_seconds)
    assert {test.speaker for test in built.tests} == set(VOICES)
    utterances = {entry.speaker: entry.utterances for entry in speech}
    for test in built.tests:
        assert len(test.samples) == int(test_seconds * SAMPLE_RATE)
        enrolled = built.enrollments[test.speaker]
        assert not any(np.shares_memory(test.samples, u) for u in enrolled)
        assert any(np.shares_memory(test.samples, u) for u in utterances[test.speaker])


def test_enrollment_does_not_depend_on_the_test_length(speech: list[SpeakerSpeech]) -> None:
    short, long = protocol(speech, 1.0), protocol(speech, 3.0)
    assert short.speakers == long.speakers
    for speaker in short.speakers:
        assert [id(u) for u in short.enrollments[speaker]] == [
            id(u) for u in long.enrollments[speaker]
        ]


def test_the_same_seed_gives_the_same_protocol(speech: list[SpeakerSpeech]) -> None:
    first, second = protocol(speech, 1.0, seed=7), protocol(speech, 1.0, seed=7)
    assert [t.speaker for t in first.tests] == [t.speaker for t in second.tests]
    for a, b in zip(first.tests, second.tests, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)
    for speaker in first.speakers:
        assert all(
            a is b
            for a, b in zip(first.enrollments[speaker], second.enrollments[speaker], strict=True)
        )


def test_joined_utterances_give_crops_longer_than_any_utterance(
    speech: list[SpeakerSpeech],
) -> None:
    longest = max(len(u) for entry in speech for u in entry.utterances) / SAMPLE_RATE
    seconds = longest + 1.0
    assert not protocol(speech, seconds).tests
    joined = build_protocol(
        speech, enroll_seconds=ENROLL_SECONDS, test_seconds=seconds, join_utterances=True
    )
    assert joined.tests
    assert all(len(t.samples) == int(seconds * SAMPLE_RATE) for t in joined.tests)


def test_a_speaker_without_test_speech_stays_enrolled(speech: list[SpeakerSpeech]) -> None:
    """It still serves as a non-target voiceprint for everyone else's tests."""
    built = protocol(speech, 1000.0)
    assert built.speakers == sorted(VOICES)
    assert not built.tests
