"""scripts/compare_streaming.py's comparison on synthetic speakers: its shape and
its cost accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE
from biometrics.evaluation.protocol import SpeakerSpeech
from biometrics.evaluation.run import service_embedder
from tests.evaluation.conftest import VOICES
from tests.evaluation.test_evaluate_script import load_script
from tests.voices import synthetic_speech


@pytest.fixture(scope="module")
def speech() -> list[SpeakerSpeech]:
    """Three speakers, four 5 s utterances each (raw synthetic audio as speech)."""
    return [
        SpeakerSpeech(
            speaker,
            [synthetic_speech(5.0, seed=10 * number + i, **voice) for i in range(4)],
        )
        for number, (speaker, voice) in enumerate(VOICES.items())
    ]


def test_compares_both_strategies_at_every_decision_point(
    speech: list[SpeakerSpeech], model_folder: Path, tmp_path: Path
) -> None:
    script = load_script("compare_streaming")
    embedder = service_embedder(str(model_folder), tmp_path / "cache")
    comparison = script.compare_streaming(
        embedder,
        speech,
        decision_seconds=(2, 4),
        chunk_seconds=1.5,
        enroll_seconds=5.0,
        max_streams_per_speaker=1,
    )

    assert comparison["decision_seconds"] == [2.0, 4.0]
    assert comparison["n_speakers"] == 3 and comparison["n_streams"] == 3
    assert set(comparison["strategies"]) == {"chunk_average", "growing_window"}
    for result in comparison["strategies"].values():
        assert [p["decision_seconds"] for p in result["points"]] == [2.0, 4.0]
        assert all(p["n_target"] == comparison["n_streams"] for p in result["points"])
        assert result["cost"]["wall_seconds"] > 0
    # Per stream: chunks 0-1.5 and 1.5-3 s once, tails 1.5-2 (under 1 s: left out)
    # and 3-4 s; the window embeds 2 s, then 4 s.
    costs = {
        name: result["cost"]["audio_seconds_per_stream"]
        for name, result in comparison["strategies"].items()
    }
    assert costs == pytest.approx({"chunk_average": 4.0, "growing_window": 6.0})
    assert "growing_window" in script.report(comparison)


def test_chunk_average_pools_complete_chunks_and_a_long_enough_tail() -> None:
    script = load_script("compare_streaming")
    calls: list[int] = []

    def embed(pieces: list[np.ndarray]) -> np.ndarray:
        calls.extend(len(piece) for piece in pieces)
        return np.tile(np.eye(2, dtype=np.float32)[[len(calls) % 2]], (len(pieces), 1))

    second = SAMPLE_RATE
    vectors, cost = script.chunk_average(
        embed, np.zeros(5 * second, dtype=np.float32), [2 * second, 5 * second], chunk=2 * second
    )
    assert calls == [2 * second, 2 * second, 1 * second]
    assert cost == 5 * second
    assert vectors.shape == (2, 2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
