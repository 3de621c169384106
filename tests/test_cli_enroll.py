"""``biometrics enroll``, end to end: the command bulk-enrolls against a real server
(``live_server``, SQLite and PostgreSQL), prints its progress and summary, and says with
its exit status how it went. What a run does speaker by speaker is in
test_bulk_enrollment.py."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from biometrics import cli
from biometrics.soak.service import free_port
from tests.recordings import (
    ALICE,
    BOB,
    server_speaker,
    speech,
    summary_row,
    two_speaker_folder,
    write,
)
from tests.voices import RATE, flac_bytes, wav_bytes


def enroll(argv: list[str]) -> int:
    return cli.main(["enroll", *argv])


# --- Against the real service ---------------------------------------------------------------


def test_folder_per_speaker_enrolls_every_speaker_and_prints_a_summary(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    write(source / "alice" / "notes.txt", b"not audio")

    assert enroll([str(source), "--url", live_server.url]) == 0

    out, err = capsys.readouterr()
    for speaker_id in ("alice", "bob"):
        speaker = server_speaker(live_server.url, speaker_id)
        assert speaker is not None and speaker["status"] == "ENROLLED"
        assert speaker["enrolled_speech_seconds"] >= 9.0
        row = summary_row(out, speaker_id)
        assert row.split()[1:4] == ["2", f"{speaker['enrolled_speech_seconds']:.1f}", "ENROLLED"]
        assert row.endswith("enrolled")
    assert "2 speaker(s): 2 enrolled, 0 skipped" in out
    # stderr is not a terminal here: one progress line per speaker, no bar.
    assert err.count("\n") == 2 and "alice: enrolled" in err and "\r" not in err


def test_manifest_paths_are_relative_to_the_manifest_unless_absolute(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "lists" / "audio" / "a1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(tmp_path / "lists" / "audio" / "a2.wav", wav_bytes(speech(ALICE, seed=2)))
    elsewhere = write(tmp_path / "elsewhere" / "b1.flac", flac_bytes(speech(BOB, seed=3)))
    write(tmp_path / "elsewhere" / "b2.flac", flac_bytes(speech(BOB, seed=4)))
    manifest = tmp_path / "lists" / "enroll.csv"
    manifest.write_text(
        "speaker_id,path\n"
        "alice,audio/a1.wav\n"
        f"bob,{elsewhere}\n"
        "alice,audio/a2.wav\n"
        f"bob,{elsewhere.parent / 'b2.flac'}\n"
    )

    assert enroll([str(manifest), "--url", live_server.url, "--quiet"]) == 0

    out, err = capsys.readouterr()
    assert err == ""
    for speaker_id in ("alice", "bob"):
        speaker = server_speaker(live_server.url, speaker_id)
        assert speaker is not None and speaker["status"] == "ENROLLED"
        assert summary_row(out, speaker_id).split()[1] == "2"


def test_rerun_skips_enrolled_speakers_and_overwrite_rebuilds_their_voiceprint(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    assert enroll([str(source), "--url", live_server.url]) == 0
    first = server_speaker(live_server.url, "alice")
    assert first is not None
    capsys.readouterr()

    assert enroll([str(source), "--url", live_server.url]) == 0
    out, _ = capsys.readouterr()
    assert summary_row(out, "alice").endswith("skipped (already enrolled)")
    assert summary_row(out, "alice").split()[1] == "0"
    assert server_speaker(live_server.url, "alice") == first

    assert enroll([str(source), "--url", live_server.url, "--overwrite"]) == 0
    out, _ = capsys.readouterr()
    assert summary_row(out, "alice").split()[1] == "2"
    again = server_speaker(live_server.url, "alice")
    assert again is not None and again["status"] == "ENROLLED"
    # Replaced, not added to: the same two files give the same net speech.
    assert again["enrolled_speech_seconds"] == first["enrolled_speech_seconds"]
    assert datetime.fromisoformat(again["updated_at"]) > datetime.fromisoformat(first["updated_at"])


def test_corrupt_and_silent_files_fail_their_speaker_while_others_still_enroll(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))
    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    write(source / "carol" / "x.wav", noise)
    write(source / "carol" / "silence.wav", wav_bytes(np.zeros(6 * RATE, dtype=np.float32)))

    assert enroll([str(source), "--url", live_server.url]) == 1

    out, _ = capsys.readouterr()
    assert summary_row(out, "alice").endswith("enrolled")
    alice = server_speaker(live_server.url, "alice")
    assert alice is not None and alice["status"] == "ENROLLED"
    carol = summary_row(out, "carol")
    assert carol.split()[1:4] == ["2", "0.0", "-"]
    assert carol.endswith("FAILED: 2 of 2 file(s) rejected")
    assert "carol: x.wav - HTTP 400 invalid_audio: could not decode" in out
    assert "carol: silence.wav - HTTP 422 insufficient_speech" in out
    assert "1 enrolled, 0 skipped (0 already enrolled, 0 opted out), 1 failed" in out
    assert server_speaker(live_server.url, "carol") is None


# --- Usage errors -----------------------------------------------------------------------------


def test_unreachable_service_exits_5_after_retrying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []  # the backoff, recorded instead of slept
    monkeypatch.setattr("biometrics.client.time.sleep", sleeps.append)
    source = two_speaker_folder(tmp_path / "recordings")
    url = f"http://127.0.0.1:{free_port()}"

    assert enroll([str(source), "--url", url, "--retries", "2"]) == 5

    out, err = capsys.readouterr()
    assert out == ""
    assert f"cannot reach the service at {url}" in err
    assert sleeps == [0.5, 1.0]


def test_url_that_is_not_http_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    assert enroll([str(source), "--url", "127.0.0.1:8000"]) == 2
    assert "--url (or BIOMETRICS_URL) must be an http:// or https:// URL" in capsys.readouterr().err


def test_missing_source_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert enroll([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_manifest_exits_2_before_contacting_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "enroll.csv").write_text("speaker_id,path\nalice,missing.wav\nbob\n")
    url = f"http://127.0.0.1:{free_port()}"  # never reached: the manifest is checked first

    assert enroll([str(tmp_path / "enroll.csv"), "--url", url]) == 2

    err = capsys.readouterr().err
    assert f"biometrics enroll: error: {tmp_path / 'enroll.csv'} has problems:" in err
    assert "line 2: missing.wav does not exist\n  line 3: expected speaker_id,path" in err
