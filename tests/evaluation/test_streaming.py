"""The streaming comparison on synthetic speakers: its decision points, its shape and
its cost accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE
from biometrics.audio.framing import FRAME_SAMPLES
from biometrics.evaluation.protocol import SpeakerSpeech
from biometrics.evaluation.report import streaming_table
from biometrics.evaluation.run import service_embedder
from biometrics.evaluation.streaming import chunk_average, compare_streaming, decision_points
from biometrics.streaming.schedule import DecisionSchedule
from tests.evaluation.conftest import VOICES
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


def test_decides_where_a_live_call_decides() -> None:
    """The service's default schedule: 3 s, every 2 s after, and a final verdict at 10 s,
    on whole frames of speech (3.01 s is judged at the frame that completes it)."""
    points = decision_points(DecisionSchedule.of_seconds(3, 2, 10))
    assert points == [s * SAMPLE_RATE for s in (3, 5, 7, 9, 10)]
    assert decision_points(DecisionSchedule.of_seconds(3.01, 5, 5))[0] == 151 * FRAME_SAMPLES


def test_compares_both_strategies_at_every_decision_point(
    speech: list[SpeakerSpeech], model_folder: Path, tmp_path: Path
) -> None:
    embedder = service_embedder(str(model_folder), tmp_path / "cache")
    comparison = compare_streaming(
        embedder,
        speech,
        DecisionSchedule.of_seconds(2, 2, 4),
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
    assert "growing_window" in streaming_table(comparison)


def test_chunk_average_pools_complete_chunks_and_a_long_enough_tail() -> None:
    calls: list[int] = []

    def embed(pieces: list[np.ndarray]) -> np.ndarray:
        calls.extend(len(piece) for piece in pieces)
        return np.tile(np.eye(2, dtype=np.float32)[[len(calls) % 2]], (len(pieces), 1))

    second = SAMPLE_RATE
    vectors, cost = chunk_average(
        embed, np.zeros(5 * second, dtype=np.float32), [2 * second, 5 * second], chunk=2 * second
    )
    assert calls == [2 * second, 2 * second, 1 * second]
    assert cost == 5 * second
    assert vectors.shape == (2, 2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
