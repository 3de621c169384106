"""The streaming comparison on synthetic speakers: its decision points, its shape and
its cost accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE
from biometrics.audio.framing import FRAME_SAMPLES
from biometrics.embedding.pooling import weighted_mean
from biometrics.evaluation.protocol import SpeakerSpeech
from biometrics.evaluation.report import streaming_table
from biometrics.evaluation.run import service_embedder
from biometrics.evaluation.streaming import (
    chunk_average,
    compare_streaming,
    decision_points,
    incremental,
)
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


def test_compares_every_strategy_at_every_decision_point(
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
    results = comparison["strategies"]
    assert set(results) == {
        "chunk_average",
        "growing_window",
        "incremental",
        "incremental_final_window",
    }
    for result in results.values():
        assert [p["decision_seconds"] for p in result["points"]] == [2.0, 4.0]
        assert all(p["n_target"] == comparison["n_streams"] for p in result["points"])
        assert result["cost"]["wall_seconds"] > 0
        assert all(p["wall_ms_per_stream"] > 0 for p in result["points"])
    # Per stream: chunks 0-1.5 and 1.5-3 s once, tails 1.5-2 (under 1 s: left out)
    # and 3-4 s; the window embeds 2 s, then 4 s; incremental 2 s, then the 2 s since;
    # incremental with a final window 2 s, then all 4 s.
    per_decision = {
        name: [p["audio_seconds_per_stream"] for p in result["points"]]
        for name, result in results.items()
    }
    assert per_decision == {
        "chunk_average": pytest.approx([1.5, 2.5]),
        "growing_window": pytest.approx([2.0, 4.0]),
        "incremental": pytest.approx([2.0, 2.0]),
        "incremental_final_window": pytest.approx([2.0, 4.0]),
    }
    assert {name: r["cost"]["audio_seconds_per_stream"] for name, r in results.items()} == (
        pytest.approx({name: sum(costs) for name, costs in per_decision.items()})
    )
    # Every incremental strategy's first decision is the growing window's.
    first = {name: r["points"][0] for name, r in results.items()}
    for name in ("incremental", "incremental_final_window"):
        assert first[name]["eer"] == first["growing_window"]["eer"]
        assert first[name]["min_dcf_0.01"] == first["growing_window"]["min_dcf_0.01"]
    final = {name: r["points"][-1]["eer"] for name, r in results.items()}
    assert final["incremental_final_window"] == final["growing_window"]
    assert "incremental_final_window" in streaming_table(comparison)


def test_chunk_average_pools_complete_chunks_and_a_long_enough_tail() -> None:
    calls: list[int] = []

    def embed(pieces: list[np.ndarray]) -> np.ndarray:
        calls.extend(len(piece) for piece in pieces)
        return np.tile(np.eye(2, dtype=np.float32)[[len(calls) % 2]], (len(pieces), 1))

    second = SAMPLE_RATE
    decisions = list(
        chunk_average(
            embed,
            np.zeros(5 * second, dtype=np.float32),
            [2 * second, 5 * second],
            chunk=2 * second,
        )
    )
    assert calls == [2 * second, 2 * second, 1 * second]
    assert [cost for _, cost in decisions] == [2 * second, 3 * second]
    vectors = np.stack([vector for vector, _ in decisions])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_incremental_embeds_each_stretch_once_and_pools_by_speech() -> None:
    """3 s, then the 2 s since, then the 1 s since: each decision's vector is the last
    one's and the new stretch's, weighted by their speech (as voiceprints accumulate)."""
    pieces: list[int] = []
    rng = np.random.default_rng(0)
    table = rng.normal(size=(16, 8)).astype(np.float32)

    def embed(waveforms: list[np.ndarray]) -> np.ndarray:
        pieces.extend(len(w) for w in waveforms)
        rows = table[[len(w) // SAMPLE_RATE for w in waveforms]]
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    second = SAMPLE_RATE
    points = [3 * second, 5 * second, 6 * second]
    decisions = list(incremental(embed, np.zeros(6 * second, dtype=np.float32), points))

    assert pieces == [3 * second, 2 * second, 1 * second]
    assert [cost for _, cost in decisions] == pieces
    unit = embed([np.zeros(n, dtype=np.float32) for n in (3 * second, 2 * second, second)])
    after_five = weighted_mean(unit[:2], [3, 2])
    expected = [unit[0], after_five, weighted_mean(np.stack([after_five, unit[2]]), [5, 1])]
    for (vector, _), wanted in zip(decisions, expected, strict=True):
        np.testing.assert_allclose(vector, wanted, rtol=1e-5, atol=1e-6)
