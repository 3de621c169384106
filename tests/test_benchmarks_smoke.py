"""The benchmarks, tiny: each runs for a fraction of a second on generated voices (and the
suite's small model) and writes its JSON with the figures the performance notes quote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import (
    batching,
    ingestion,
    live_calls,
    machine_peak,
    memory,
    model_vs_service,
    precision,
    profile,
    replicas,
)
from benchmarks.common import DEFAULT_SPEECH
from biometrics.streaming.schedule import DecisionSchedule
from tests.voices import synthetic_speech, wav_bytes

VOICES = {"ada": (110.0, (650.0, 1100.0, 2400.0)), "bo": (180.0, (800.0, 1400.0, 2700.0))}
MACHINE_KEYS = {"date", "cpu_count", "cpu_model", "torch", "torch_threads"}


def generated_speakers(root: Path, files: int) -> Path:
    for index, (name, (pitch, formants)) in enumerate(VOICES.items()):
        folder = root / name
        folder.mkdir()
        for file in range(files):
            samples = synthetic_speech(
                8.0, pitch_hz=pitch, formants=formants, seed=10 * index + file
            )
            (folder / f"{name}-{file}.wav").write_bytes(wav_bytes(samples))
    return root


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated speakers, four 8 s files each: two enroll, two give the test crops."""
    return generated_speakers(tmp_path_factory.mktemp("speech"), 4)


@pytest.fixture(scope="module")
def call_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated speakers, six 8 s files each: four enroll (the soak's 30 s), two are
    the call audio."""
    return generated_speakers(tmp_path_factory.mktemp("call-speech"), 6)


def written(path: Path) -> dict:
    result = json.loads(path.read_text())
    assert set(result["machine"]) >= MACHINE_KEYS
    return result


def test_model_vs_service_compares_raw_batches_with_scored_rest_verdicts(
    speech: Path, model_folder: Path, tmp_path: Path
):
    out = tmp_path / "model_vs_service.json"
    args = ["--model", str(model_folder), "--seconds", "0.5", "--clients", "2"]
    assert model_vs_service.main([*args, "--speech", str(speech), "--out", str(out)]) == 0
    result = written(out)
    paths = [row["path"] for row in result["rows"]]
    assert paths[:3] == ["raw, one clip at a time", "raw, batches of 8", "raw, batches of 16"]
    assert paths[3].startswith("service, REST")
    service = result["rows"][3]
    assert service["clips"] > 0 and service["errors"] == 0  # verdicts were really scored
    assert all(row["clips_per_second"] > 0 for row in result["rows"])
    assert set(result["ratios"]) == {f"service/{path}" for path in paths[:3]}


def test_machine_peak_reports_fp32_gflops(tmp_path: Path):
    out = tmp_path / "machine_peak.json"
    assert machine_peak.main(["--seconds", "0.05", "--sizes", "256", "--out", str(out)]) == 0
    result = written(out)
    assert result["peak_gflops"]["float32"] > 0
    assert "float32" in result["ecapa_audio_seconds_per_second_at_peak"]


def test_ingestion_reports_each_stage_and_streams_per_core(speech: Path, tmp_path: Path):
    out = tmp_path / "ingestion.json"
    args = ["--seconds", "0.05", "--call-seconds", "8", "--speech", str(speech)]
    assert ingestion.main([*args, "--out", str(out)]) == 0
    result = written(out)
    assert [row["stage"] for row in result["rows"]][-1] == "all stages"
    assert len(result["rows"]) == 4
    assert result["streams_per_core"] > 1  # far faster than real time, even on a slow box
    assert 0 < result["speech_share"] <= 1


def test_batching_sweeps_max_batch_and_max_wait(speech: Path, model_folder: Path, tmp_path: Path):
    out = tmp_path / "batching.json"
    args = ["--model", str(model_folder), "--requests", "4", "--rounds", "1"]
    grid = ["--batches", "1,4", "--waits", "0,5", "--speech", str(speech)]
    assert batching.main([*args, *grid, "--out", str(out)]) == 0
    result = written(out)
    assert result["padding_cosines"]["equal_min"] > 0.9999  # one length: as alone
    rows = result["rows"]
    assert [(row["max_batch"], row["max_wait_ms"]) for row in rows] == [
        (1, 0.0),
        (1, 5.0),
        (4, 0.0),
        (4, 5.0),
    ]
    assert rows[0]["mean_batch"] == 1.0 and rows[0]["throughput_ratio"] == 1.0
    assert rows[3]["mean_batch"] > 1.0  # four equal crops at once, waited for: batched
    assert all(row["requests"] == 4 and row["requests_per_second"] > 0 for row in rows)


@pytest.mark.skipif(
    not DEFAULT_SPEECH.is_dir(), reason=f"no LibriSpeech readers at {DEFAULT_SPEECH}"
)
def test_live_calls_times_every_verdict_of_a_real_reader_from_its_last_frame(tmp_path: Path):
    """One call of a genuine reader (the bundled model, a 1, 2, 3 s schedule): each verdict
    is timed from the frame that completed its speech to its event, and none is missing."""
    out = tmp_path / "live_calls.json"
    args = ["--model", "bundled", "--calls", "1", "--speakers", "2", "--call-seconds", "5"]
    assert live_calls.main([*args, "--schedule", "1,1,3", "--out", str(out)]) == 0
    result = written(out)
    assert result["schedule_seconds"] == {"min": 1.0, "step": 1.0, "max": 3.0}
    [row] = result["rows"]
    assert row["mode"] == "burst" and row["calls"] == 1 and row["errors"] == 0
    assert row["verdicts_expected"] == row["verdicts_received"] == 3  # 5 s of audio: 3 s speech
    assert row["verdicts_missing"] == row["last_verdicts_lost"] == 0
    assert row["decisions"].get("ACCEPT", 0) >= 2  # the reader really is who they claim
    assert 0 < row["first_verdict_ms"]["p95"] <= row["all_verdicts_ms"]["max"] < 30_000
    assert set(row["p50_ms_by_point_seconds"]) == {"1", "2", "3"}
    assert row["send_lag_ms"]["p50"] is not None
    assert row["server_cpu_percent"] > 0
    assert row["peak_rss_mib"] >= row["start_rss_mib"] > 0
    assert row["pass"] is (row["first_verdict_ms"]["p95"] <= result["max_p95_ms"])


def test_a_missing_speech_folder_is_skipped_with_a_message(tmp_path: Path, capsys):
    assert ingestion.main(["--speech", str(tmp_path / "absent")]) == 2
    assert "no speech folder" in capsys.readouterr().err
    assert live_calls.main(["--speech", str(tmp_path / "absent")]) == 2
    assert "no speech folder" in capsys.readouterr().err


def test_live_calls_expects_a_verdict_at_each_point_the_speech_reached():
    schedule = DecisionSchedule.of_seconds(3.0, 2.0, 10.0)  # verdicts at 3, 5, 7, 9, 10 s
    expected = {2.0: 0, 3.0: 1, 5.0: 2, 6.0: 3, 10.0: 5, 14.0: 5}
    assert {s: live_calls.expected_verdicts(schedule, s) for s in expected} == expected
    # A verdict on 7.4 s waited behind the one before it: due at 7 s, it started later.
    verdicts = [(0.1, 7.0, "ACCEPT"), (0.1, 7.4, "ACCEPT"), (0.1, 10.0, "ACCEPT")]
    assert live_calls.started_late(schedule, verdicts) == 1
    assert live_calls.by_point(schedule, verdicts) == {"7": 100.0, "10": 100.0}


def test_the_capacity_search_doubles_then_bisects_to_the_largest_passing_value():
    tried: list[int] = []

    def measure(value: int) -> dict[str, bool]:
        tried.append(value)
        return {"pass": value <= 13}

    assert live_calls.search(measure, 5, 1000) == 13
    assert tried == [5, 10, 20, 15, 12, 13, 14]
    assert live_calls.search(lambda value: {"pass": False}, 5, 1000) is None
    assert live_calls.search(lambda value: {"pass": True}, 5, 40) == 40


def test_memory_reports_rss_slopes_and_frees_evicted_calls(
    call_speech: Path, model_folder: Path, tmp_path: Path
):
    out = tmp_path / "memory.json"
    args = ["--scenario", "rounds", "--rounds", "2", "--concurrent", "1", "--speakers", "2"]
    args += ["--call-seconds", "8", "--speed", "8", "--retention-seconds", "0.5"]
    args += ["--sample-seconds", "0.2", "--model", str(model_folder), "--diagnose"]
    assert memory.main([*args, "--speech", str(call_speech), "--out", str(out)]) == 0
    result = written(out)
    assert result["calls"] == 2 and result["errors"] == {}
    assert [row["calls"] for row in result["checkpoints"]] == [1, 2]
    assert result["baseline_rss_mb"] > 0 and result["peak_rss_mb"] >= result["baseline_rss_mb"]
    assert isinstance(result["mb_per_call"], float)
    assert isinstance(result["mb_per_minute"], float)
    samples = [line for line in result["probes"] if line["probe"] == "sample"]
    assert len(samples) == 2
    for line in samples:
        # Evicted, a call and its participants are gone at once, not left to the collector.
        assert line["watched"]["CallSession"] == 0
        assert line["watched"]["SpeechBuffer"] == 0
        assert line["rss_after_trim_mb"] is None or line["rss_after_trim_mb"] > 0


def test_profile_counts_self_time_and_shares_from_collapsed_stacks(tmp_path: Path):
    folded = tmp_path / "p.folded"
    model = "Module._call_impl (torch/nn/modules/module.py:1794)"
    sql = "DefaultDialect.do_commit (sqlalchemy/engine/default.py:954)"
    loop = "Runner.run (asyncio/runners.py:118)"
    waiting = "_worker (concurrent/futures/thread.py:81);0x7f59 (libc.so.6)"  # --native
    folded.write_text(f"{loop};{model} 3\n{loop};{sql} 1\n{loop} 4\n{waiting} 8\n")
    result = profile.aggregate(folded)
    assert result["samples"] == 16
    assert result["top_self"][:2] == [
        {"frame": "0x7f59 (libc.so.6)", "samples": 8, "share": 0.5},
        {"frame": "Runner.run (asyncio/runners.py:118)", "samples": 4, "share": 0.25},
    ]
    assert result["categories"] == {
        "waiting (idle threads)": 0.5,
        "event loop": 0.25,
        "model (torch, speechbrain)": 0.1875,
        "SQL": 0.0625,
    }


def test_precision_compares_each_variant_with_fp32_in_the_same_run(
    speech: Path, model_folder: Path, tmp_path: Path
):
    out = tmp_path / "precision.json"
    # bf16 needs torch alone; onnx's export (tens of seconds) is tested in tests/embedding.
    variants = ["bf16"]
    args = ["--model", str(model_folder), "--seconds", "0.2", "--threads", "1"]
    args += ["--precision", *variants, "--speech", str(speech), "--out", str(out)]
    assert precision.main(args) == 0
    rows = {row["precision"]: row for row in written(out)["rows"]}
    assert list(rows) == ["fp32", *variants, "int8"]
    assert rows["fp32"]["speedup_batch_1"] == 1.0 and rows["fp32"]["cosine_min"] > 0.9999
    for name in variants:
        assert rows[name]["clips_per_second_batch_8"] > 0
        assert rows[name]["cosine_min"] >= 0.999
    assert rows["int8"]["quantised"] == 0 and "not offered" in rows["int8"]["failed"]


def test_a_point_merged_into_a_later_verdict_is_not_a_lost_verdict():
    schedule = DecisionSchedule.of_seconds(3.0, 2.0, 10.0)
    merged = [(0.1, 3.0, "ACCEPT"), (0.1, 5.0, "ACCEPT"), (0.1, 9.6, "ACCEPT"), (0.1, 10.0, "A")]
    assert not live_calls.last_lost(schedule, 14.0, merged)  # 7 and 9 s merged into 9.6 s
    assert live_calls.last_lost(schedule, 14.0, merged[:3])  # no verdict on all 10 s
    assert live_calls.last_lost(schedule, 6.0, merged[:1])  # 6 s heard, judged on 3 s only
    assert not live_calls.last_lost(schedule, 2.0, [])  # too little speech: nothing owed


def test_replicas_times_claims_and_events_across_two_replicas(call_speech: Path, tmp_path: Path):
    out = tmp_path / "replicas.json"
    args = ["--calls", "2", "--call-seconds", "5", "--speech", str(call_speech)]
    code = replicas.main([*args, "--out", str(out)])
    if code == 2:
        pytest.skip("redis-server is not installed")
    result = written(out)
    assert code == 0 and result["replicas"] == 2
    assert result["claim_latency"]["n"] == 2 and result["claim_latency"]["p95_ms"] > 0
    assert result["verdicts"] >= 2 and result["event_fan_out_latency"]["n"] == result["verdicts"]
    assert result["redis_requests_per_verdict"] > 1  # a script per event, and the rest
