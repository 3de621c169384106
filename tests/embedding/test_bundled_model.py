"""The model that ships inside the package: it loads offline by default and tells
voices apart on real speech of speakers it never trained on."""

from __future__ import annotations

import numpy as np
import pytest

from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.embedding.encoder import BUNDLED_FOLDER, BUNDLED_NAME
from biometrics.embedding.folder import MODEL_FILES
from biometrics.embedding.pooling import pool_speech
from biometrics.evaluation.protocol import build_protocol, find_speakers, load_speech
from tests.conftest import LIBRISPEECH


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> SpeakerEncoder:
    return load_encoder("bundled", tmp_path_factory.mktemp("cache"))


def test_the_bundled_model_is_the_default_and_ships_in_the_production_layout() -> None:
    assert Settings.from_env({}).model_source == "bundled"
    assert sorted(p.name for p in BUNDLED_FOLDER.iterdir() if p.name in MODEL_FILES) == sorted(
        MODEL_FILES
    )
    assert (BUNDLED_FOLDER / "MODEL_CARD.md").is_file()


def test_the_bundled_model_loads_offline_and_names_itself(bundled: SpeakerEncoder) -> None:
    assert bundled.identity.source == BUNDLED_NAME
    assert "production" in bundled.identity.as_dict()["notice"]
    assert bundled.dimension == 192


@pytest.mark.skipif(not LIBRISPEECH.is_dir(), reason="shared LibriSpeech excerpts absent")
def test_same_speaker_scores_above_different_speakers_on_unseen_speech(
    bundled: SpeakerEncoder,
) -> None:
    speech = load_speech(find_speakers(LIBRISPEECH / "test-other-dev"))
    protocol = build_protocol(speech, enroll_seconds=20.0, test_seconds=3.0, seed=0)
    voiceprints = np.stack(
        [
            pool_speech(bundled.embed, np.concatenate(protocol.enrollments[s]))[0]
            for s in protocol.speakers
        ]
    )
    tests = bundled.embed([test.samples for test in protocol.tests])
    scores = tests @ voiceprints.T
    own = np.array([protocol.speakers.index(test.speaker) for test in protocol.tests])
    target = scores[np.arange(len(own)), own]
    others = np.where(np.eye(len(protocol.speakers), dtype=bool)[own], -np.inf, scores).max(axis=1)
    # Most crops score higher against their own speaker than against any other.
    assert np.mean(target > others) > 0.85
    assert np.median(target) > np.median(scores[~np.eye(len(protocol.speakers), dtype=bool)[own]])
