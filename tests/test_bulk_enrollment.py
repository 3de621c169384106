"""Bulk enrollment: reading a folder or manifest, and a run over the client against a real
server (``live_server``), or against a scripted stand-in where a test needs the service to
misbehave."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from biometrics import bulk_enrollment
from biometrics.bulk_enrollment import Outcome, UsageError
from biometrics.cli.enroll import print_summary
from biometrics.client import Client, RetryPolicy, TransportError
from biometrics.soak.service import free_port
from tests.recordings import (
    ALICE,
    BOB,
    key_headers,
    server_speaker,
    speech,
    summary_row,
    two_speaker_folder,
    write,
)
from tests.voices import wav_bytes


@dataclasses.dataclass
class Run:
    outcomes: dict[str, Outcome]
    summary: str


def run(url: str, source: Path, *, overwrite: bool = False, retries: int = 3) -> Run:
    """Enroll ``source`` quietly, and print its summary the way the command does."""
    out = io.StringIO()
    api_key = os.environ.get("BIOMETRICS_API_KEY")  # set by the live_server fixture
    with Client(url, api_key=api_key, retry=RetryPolicy(retries=retries)) as api:
        outcomes = bulk_enrollment.run(
            api, bulk_enrollment.load_source(source), overwrite=overwrite
        )
    print_summary(outcomes, out)
    return Run({outcome.speaker_id: outcome for outcome in outcomes}, out.getvalue())


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("biometrics.client.time.sleep", slept.append)
    return slept


# --- Reading the source -----------------------------------------------------------------------


def labels(speakers: dict[str, list[bulk_enrollment.Recording]]) -> dict[str, list[str]]:
    return {
        speaker_id: [r.label for r in recordings] for speaker_id, recordings in speakers.items()
    }


def test_a_folder_is_one_speaker_per_subfolder_with_its_audio_in_name_order(
    tmp_path: Path,
) -> None:
    for name in (
        "bob/intro.ogg",
        "alice/2.flac",
        "alice/1.wav",
        "alice/notes.txt",
        ".hidden/x.wav",
    ):
        write(tmp_path / name, b"")
    (tmp_path / "carol").mkdir()

    speakers = bulk_enrollment.load_source(tmp_path)

    assert labels(speakers) == {"alice": ["1.wav", "2.flac"], "bob": ["intro.ogg"], "carol": []}
    assert speakers["alice"][0].path == tmp_path / "alice" / "1.wav"


def test_a_manifest_keeps_first_appearance_order_and_sends_a_file_once(tmp_path: Path) -> None:
    write(tmp_path / "lists" / "audio" / "b1.wav", b"")
    write(tmp_path / "lists" / "audio" / "a1.wav", b"")
    elsewhere = write(tmp_path / "elsewhere" / "a2.flac", b"")
    manifest = tmp_path / "lists" / "enroll.csv"
    manifest.write_text(
        "speaker_id,path\n"
        "bob,audio/b1.wav\n"
        "\n"
        f"alice,{elsewhere}\n"
        "alice,audio/a1.wav\n"
        "bob,audio/b1.wav\n"
    )

    speakers = bulk_enrollment.load_source(manifest)

    assert labels(speakers) == {"bob": ["audio/b1.wav"], "alice": [str(elsewhere), "audio/a1.wav"]}
    assert speakers["alice"][1].path == tmp_path / "lists" / "audio" / "a1.wav"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("speaker,file\nalice,a.wav\n", "must start with the header line: speaker_id,path"),
        ("", "must start with the header line"),
        ("speaker_id,path\n", "lists no recordings"),
        ("speaker_id,path\nalice,missing.wav\n", "line 2: missing.wav does not exist"),
        ("speaker_id,path\nalice,notes.txt\n", "line 2: notes.txt is not a .wav, .flac or .ogg"),
        ("speaker_id,path\nalice\n", "line 2: expected speaker_id,path"),
        ("speaker_id,path\nalice\nbob,x.wav\n", "line 2: expected speaker_id,path\n  line 3:"),
    ],
)
def test_a_bad_manifest_names_its_problems(tmp_path: Path, manifest: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "enroll.csv").write_text(manifest)

    with pytest.raises(UsageError) as error:
        bulk_enrollment.load_source(tmp_path / "enroll.csv")

    assert message in str(error.value)


def test_a_source_must_be_a_folder_of_speakers_or_a_csv(tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.txt", b"hello")
    for source, message in [
        (tmp_path / "nowhere", "does not exist"),
        (notes, "is neither a folder nor a .csv manifest"),
        (tmp_path, "has no speaker subfolders"),
    ]:
        with pytest.raises(UsageError, match=message):
            bulk_enrollment.load_source(source)


# --- Against the real service ---------------------------------------------------------------


def test_overwrite_replaces_with_the_first_accepted_file_even_after_a_rejected_one(
    live_server, tmp_path: Path
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))
    assert not run(live_server.url, source).outcomes["alice"].failed
    before = server_speaker(live_server.url, "alice")
    assert before is not None
    write(source / "alice" / "0-broken.wav", b"RIFF\x00\x00not a wave file")

    alice = run(live_server.url, source, overwrite=True).outcomes["alice"]

    assert alice.result == "FAILED: 1 of 3 file(s) rejected"
    assert [rejection.label for rejection in alice.rejected] == ["0-broken.wav"]
    after = server_speaker(live_server.url, "alice")
    assert after is not None
    assert after["enrolled_speech_seconds"] == before["enrolled_speech_seconds"]


def test_rerun_after_a_partial_enrollment_counts_no_recording_twice(
    live_server, tmp_path: Path
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    first = run(live_server.url, source).outcomes["alice"]
    partial = server_speaker(live_server.url, "alice")
    assert partial is not None and partial["status"] == "PENDING_ENROLLMENT"
    needed = f"needs {partial['remaining_speech_seconds']:.1f} more seconds of speech"
    assert first.failed and first.result == f"FAILED: {needed}"

    second = write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))
    assert run(live_server.url, source).outcomes["alice"].result == "enrolled"

    speaker = server_speaker(live_server.url, "alice")
    assert speaker is not None and speaker["status"] == "ENROLLED"
    reply = httpx.post(  # what the second file alone adds, measured on a scratch speaker
        f"{live_server.url}/v1/speakers/scratch/enrollments",
        content=second.read_bytes(),
        headers={"Content-Type": "audio/wav", **key_headers()},
    )
    alone = reply.json()["speech_seconds"]
    assert speaker["enrolled_speech_seconds"] == pytest.approx(
        partial["enrolled_speech_seconds"] + alone, abs=0.02
    )


def test_file_over_the_upload_limit_is_rejected_and_the_next_file_still_sent(
    live_server, tmp_path: Path
) -> None:
    source = tmp_path / "recordings"
    limit = live_server.settings.max_upload_bytes
    huge = write(source / "alice" / "0-huge.wav", wav_bytes(np.zeros(limit, dtype=np.float32)))
    assert huge.stat().st_size > limit
    write(source / "alice" / "1.wav", wav_bytes(speech(ALICE, seed=1)))
    write(source / "alice" / "2.wav", wav_bytes(speech(ALICE, seed=2)))

    done = run(live_server.url, source)

    assert "alice: 0-huge.wav - HTTP 413 payload_too_large" in done.summary
    alice = done.outcomes["alice"]
    assert (alice.files_sent, alice.files_accepted, alice.status) == (3, 2, "ENROLLED")
    assert alice.result == "FAILED: 1 of 3 file(s) rejected"


def test_opted_out_speaker_is_skipped_not_failed_even_with_overwrite(
    live_server, tmp_path: Path
) -> None:
    httpx.post(
        f"{live_server.url}/v1/speakers/dave/opt-out", headers=live_server.headers
    ).raise_for_status()
    source = two_speaker_folder(tmp_path / "recordings")
    write(source / "dave" / "1.wav", wav_bytes(speech(BOB, seed=5)))

    done = run(live_server.url, source, overwrite=True)

    dave = done.outcomes["dave"]
    assert (dave.files_sent, dave.status, dave.failed) == (0, "OPTED_OUT", False)
    assert summary_row(done.summary, "dave").split()[1:4] == ["0", "0.0", "OPTED_OUT"]
    assert summary_row(done.summary, "dave").endswith("skipped (opted out)")
    assert "3 speaker(s): 2 enrolled, 1 skipped (0 already enrolled, 1 opted out)" in done.summary
    after = server_speaker(live_server.url, "dave")
    assert after is not None and after["status"] == "OPTED_OUT"


def test_a_speaker_folder_without_audio_fails_that_speaker_alone(
    live_server, tmp_path: Path
) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    write(source / "carol" / "notes.txt", b"no audio here")

    done = run(live_server.url, source)

    assert done.outcomes["alice"].result == "enrolled"
    assert done.outcomes["carol"].result == "FAILED: no .wav, .flac or .ogg files in its folder"
    assert server_speaker(live_server.url, "carol") is None


def test_an_unreachable_service_fails_the_run_before_any_speaker(
    tmp_path: Path, sleeps: list[float]
) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(TransportError, match=r"GET /healthz: .*refused"):
        run(url, source, retries=1)

    assert sleeps == [0.5]


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
    scripted: Scripted, tmp_path: Path, sleeps: list[float]
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

    done = run(scripted.url, source)

    assert scripted.requests == [
        ("GET", "/healthz", None),
        ("GET", alice, None),
        ("GET", alice, None),
        ("POST", alice + "/enrollments?replace=true&bulk=true", "audio/ogg"),
        ("POST", alice + "/enrollments?replace=true&bulk=true", "audio/ogg"),
        ("POST", alice + "/enrollments?bulk=true", "audio/flac"),
        ("GET", "/v1/speakers/zed", None),
        ("POST", "/v1/speakers/zed/enrollments?replace=true&bulk=true", "audio/wav"),
    ]
    assert sleeps == [0.5, 0.5]
    assert done.outcomes["ivr:+15551234567"].result == "enrolled"
    assert "zed: 1.wav - HTTP 413 payload_too_large: too big" in done.summary


def test_service_that_stops_answering_fails_the_rest_of_the_run(
    scripted: Scripted, tmp_path: Path, sleeps: list[float]
) -> None:
    source = tmp_path / "recordings"
    write(source / "alice" / "1.wav", b"wav")
    write(source / "bob" / "1.wav", b"wav")
    scripted.script[("GET", "/v1/speakers/alice")] = [None]

    done = run(scripted.url, source, retries=1)

    assert "FAILED: the service stopped answering" in done.outcomes["alice"].result
    assert done.outcomes["bob"].result == "FAILED: not tried: the service stopped answering"
    assert [path for _, path, _ in scripted.requests].count("/v1/speakers/alice") == 2
    assert sleeps == [0.5]


def test_a_server_that_is_not_the_service_is_a_usage_error(
    scripted: Scripted, tmp_path: Path
) -> None:
    source = two_speaker_folder(tmp_path / "recordings")
    scripted.script[("GET", "/healthz")] = [(404, {"error": "not_found"})]

    with pytest.raises(UsageError, match="does not look like the biometrics service"):
        run(scripted.url, source)

    assert scripted.requests == [("GET", "/healthz", None)]
