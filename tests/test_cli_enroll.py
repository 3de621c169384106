"""``biometrics enroll``, end to end: the command bulk-enrolls against a real server
(``live_server``, SQLite and PostgreSQL), or against a scripted stand-in where a
test needs the service to misbehave."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from biometrics import bulk_enrollment, cli
from tests.voices import RATE, flac_bytes, synthetic_speech, wav_bytes

ALICE = {"pitch_hz": 120.0, "formants": (700.0, 1200.0, 2500.0)}
BOB = {"pitch_hz": 210.0, "formants": (850.0, 1600.0, 2900.0)}


def enroll(argv: list[str]) -> int:
    return cli.main(["enroll", *argv])


def speech(voice: dict[str, Any], seed: int, seconds: float = 6.0) -> np.ndarray:
    return synthetic_speech(seconds, seed=seed, **voice)


def ogg_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="OGG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def two_speaker_folder(root: Path) -> Path:
    """alice: a WAV and a FLAC; bob: a WAV and an OGG; about 10 s of speech each."""
    write(root / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(root / "alice" / "2.flac", flac_bytes(speech(ALICE, seed=2)))
    write(root / "bob" / "1.wav", wav_bytes(speech(BOB, seed=3)))
    write(root / "bob" / "2.ogg", ogg_bytes(speech(BOB, seed=4)))
    return root


def server_speaker(url: str, speaker_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{url}/v1/speakers/{speaker_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def summary_row(stdout: str, speaker_id: str) -> str:
    rows = [line for line in stdout.splitlines() if line.split()[:1] == [speaker_id]]
    assert len(rows) == 1, stdout
    return rows[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("biometrics.client.time.sleep", slept.append)
    return slept


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


def test_overwrite_replaces_with_the_first_accepted_file_even_after_a_rejected_one(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))
    assert enroll([str(source), "--url", live_server.url]) == 0
    before = server_speaker(live_server.url, "alice")
    assert before is not None
    capsys.readouterr()
    write(source / "alice" / "0-broken.wav", b"RIFF\x00\x00not a wave file")

    assert enroll([str(source), "--url", live_server.url, "--overwrite"]) == 1

    out, _ = capsys.readouterr()
    assert "FAILED: 1 of 3 file(s) rejected" in summary_row(out, "alice")
    after = server_speaker(live_server.url, "alice")
    assert after is not None
    assert after["enrolled_speech_seconds"] == before["enrolled_speech_seconds"]


def test_rerun_after_a_partial_enrollment_counts_no_recording_twice(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    assert enroll([str(source), "--url", live_server.url]) == 1
    partial = server_speaker(live_server.url, "alice")
    assert partial is not None and partial["status"] == "PENDING_ENROLLMENT"
    out, _ = capsys.readouterr()
    needed = f"needs {partial['remaining_speech_seconds']:.1f} more seconds of speech"
    assert summary_row(out, "alice").endswith(f"FAILED: {needed}")

    second = write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))
    assert enroll([str(source), "--url", live_server.url]) == 0

    speaker = server_speaker(live_server.url, "alice")
    assert speaker is not None and speaker["status"] == "ENROLLED"
    reply = httpx.post(  # what the second file alone adds, measured on a scratch speaker
        f"{live_server.url}/v1/speakers/scratch/enrollments",
        content=second.read_bytes(),
        headers={"Content-Type": "audio/wav"},
    )
    alone = reply.json()["speech_seconds"]
    assert speaker["enrolled_speech_seconds"] == pytest.approx(
        partial["enrolled_speech_seconds"] + alone, abs=0.02
    )


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


def test_file_over_the_upload_limit_is_rejected_and_the_next_file_still_sent(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "recordings"
    limit = live_server.settings.max_upload_bytes
    huge = write(source / "alice" / "0-huge.wav", wav_bytes(np.zeros(limit, dtype=np.float32)))
    assert huge.stat().st_size > limit
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))

    assert enroll([str(source), "--url", live_server.url]) == 1

    out, _ = capsys.readouterr()
    assert "alice: 0-huge.wav - HTTP 413 payload_too_large" in out
    row = summary_row(out, "alice")
    assert row.split()[1] == "3" and row.split()[3] == "ENROLLED"
    assert row.endswith("FAILED: 1 of 3 file(s) rejected")


def test_opted_out_speaker_is_skipped_not_failed_even_with_overwrite(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    httpx.post(f"{live_server.url}/v1/speakers/dave/opt-out").raise_for_status()
    source = two_speaker_folder(tmp_path / "recordings")
    write(source / "dave" / "1.wav", wav_bytes(speech(BOB, seed=5)))

    assert enroll([str(source), "--url", live_server.url, "--overwrite"]) == 0

    out, _ = capsys.readouterr()
    row = summary_row(out, "dave")
    assert row.split()[1:4] == ["0", "0.0", "OPTED_OUT"]
    assert row.endswith("skipped (opted out)")
    assert "(0 already enrolled, 1 opted out), 0 failed" in out
    dave = server_speaker(live_server.url, "dave")
    assert dave is not None and dave["status"] == "OPTED_OUT"


# --- Usage errors -----------------------------------------------------------------------------


def test_unreachable_service_exits_2_after_retrying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sleeps: list[float]
) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    url = f"http://127.0.0.1:{free_port()}"

    assert enroll([str(source), "--url", url, "--retries", "2"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert f"cannot reach the service at {url}" in err
    assert sleeps == [0.5, 1.0]


def test_url_that_is_not_http_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    assert enroll([str(source), "--url", "127.0.0.1:8000"]) == 2
    assert "--url: expected an http:// or https:// URL" in capsys.readouterr().err


def test_missing_source_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert enroll([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("speaker,file\nalice,a.wav\n", "must start with the header line: speaker_id,path"),
        ("", "must start with the header line"),
        ("speaker_id,path\nalice,missing.wav\n", "line 2: missing.wav does not exist"),
        ("speaker_id,path\nalice,notes.txt\n", "line 2: notes.txt is not a .wav, .flac or .ogg"),
        ("speaker_id,path\nalice\n", "line 2: expected speaker_id,path"),
    ],
)
def test_bad_manifest_exits_2_before_contacting_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest: str, message: str
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "enroll.csv").write_text(manifest)
    url = f"http://127.0.0.1:{free_port()}"  # never reached: the manifest is checked first

    assert enroll([str(tmp_path / "enroll.csv"), "--url", url]) == 2

    assert message in capsys.readouterr().err


# --- Against a scripted stand-in ----------------------------------------------------------------


@dataclasses.dataclass
class Scripted:
    """A fake service: each (method, path) answers from its script in turn, the last answer
    repeating; an answer of None drops the connection without replying."""

    url: str
    script: dict[tuple[str, str], list[tuple[int, dict[str, Any]] | None]]
    requests: list[tuple[str, str, str | None]]


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    fake = Scripted(url="", script={}, requests=[])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer()

        def answer(self) -> None:
            fake.requests.append((self.command, self.path, self.headers.get("Content-Type")))
            path = self.path.split("?")[0]
            answers = fake.script.get((self.command, path), [(404, {"error": "not_found"})])
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if answer is None:
                self.close_connection = True
                return
            status, body = answer
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    fake.script[("GET", "/healthz")] = [(200, {"status": "ok"})]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def accepted(speaker_id: str, status: str = "ENROLLED") -> tuple[int, dict[str, Any]]:
    return 201, {
        "speaker_id": speaker_id,
        "status": status,
        "enrolled_speech_seconds": 9.0,
        "remaining_speech_seconds": 0.0,
        "speech_seconds": 4.5,
    }


NOT_FOUND = (404, {"error": "speaker_not_found", "detail": "no such speaker"})


def test_server_errors_and_rate_limits_are_retried_but_client_errors_are_not(
    scripted: Scripted, tmp_path: Path, capsys: pytest.CaptureFixture[str], sleeps: list[float]
) -> None:
    source = tmp_path / "recordings"
    write(source / "ivr:+15551234567" / "1.ogg", b"ogg")
    write(source / "ivr:+15551234567" / "2.flac", b"flac")
    write(source / "zed" / "1.wav", b"wav")
    alice = "/v1/speakers/ivr%3A%2B15551234567"
    scripted.script[("GET", alice)] = [(503, {"error": "unavailable"}), NOT_FOUND]
    scripted.script[("POST", alice + "/enrollments")] = [
        (429, {"error": "too_many_requests"}),
        accepted("ivr:+15551234567", status="PENDING_ENROLLMENT"),
        accepted("ivr:+15551234567"),
    ]
    scripted.script[("GET", "/v1/speakers/zed")] = [NOT_FOUND]
    scripted.script[("POST", "/v1/speakers/zed/enrollments")] = [
        (413, {"error": "payload_too_large", "detail": "too big"})
    ]

    assert enroll([str(source), "--url", scripted.url]) == 1

    assert scripted.requests == [
        ("GET", "/healthz", None),
        ("GET", alice, None),
        ("GET", alice, None),
        ("POST", alice + "/enrollments?replace=true", "audio/ogg"),
        ("POST", alice + "/enrollments?replace=true", "audio/ogg"),
        ("POST", alice + "/enrollments", "audio/flac"),
        ("GET", "/v1/speakers/zed", None),
        ("POST", "/v1/speakers/zed/enrollments?replace=true", "audio/wav"),
    ]
    assert sleeps == [0.5, 0.5]
    out, _ = capsys.readouterr()
    assert summary_row(out, "ivr:+15551234567").endswith("enrolled")
    assert "zed: 1.wav - HTTP 413 payload_too_large: too big" in out


def test_service_that_stops_answering_fails_the_rest_of_the_run(
    scripted: Scripted, tmp_path: Path, capsys: pytest.CaptureFixture[str], sleeps: list[float]
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", b"wav")
    write(source / "bob" / "1.wav", b"wav")
    scripted.script[("GET", "/v1/speakers/alice")] = [None]

    assert enroll([str(source), "--url", scripted.url, "--retries", "1"]) == 1

    out, _ = capsys.readouterr()
    assert "FAILED: the service stopped answering" in summary_row(out, "alice")
    assert summary_row(out, "bob").endswith("FAILED: not tried: the service stopped answering")
    assert [path for _, path, _ in scripted.requests].count("/v1/speakers/alice") == 2
    assert sleeps == [0.5]


# --- Progress ---------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def last_line(terminal: Terminal) -> str:
    """What the terminal shows: the text after the last carriage return."""
    return terminal.getvalue().split("\r")[-1].rstrip()


def test_progress_is_a_bar_on_a_terminal_and_nothing_when_quiet() -> None:
    terminal = Terminal()
    progress = bulk_enrollment.Progress(4, terminal, quiet=False)
    progress.start("alice", 2)
    progress.advance()
    assert last_line(terminal) == "[" + "#" * 8 + "." * 22 + "] 1/4 files  alice"
    progress.finish(bulk_enrollment.Outcome("alice", files_total=2))
    progress.start("bob", 2)
    assert last_line(terminal) == "[" + "#" * 15 + "." * 15 + "] 2/4 files  bob"
    progress.close()
    assert terminal.getvalue().split("\r")[-1] == ""

    quiet = Terminal()
    progress = bulk_enrollment.Progress(4, quiet, quiet=True)
    progress.start("alice", 2)
    progress.advance()
    progress.finish(bulk_enrollment.Outcome("alice", files_total=2))
    progress.close()
    assert quiet.getvalue() == ""
