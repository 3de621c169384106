"""scripts/simulate_call.py: the frames it makes (pure, no server), and its send loop against a
small local WebSocket server that records what arrives or closes on it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from biometrics.streaming import AudioFormat, AudioFrame, StreamParser
from tests.voices import RATE, synthetic_speech, wav_bytes

ROOT = Path(__file__).resolve().parents[1]
ALICE = "8:acs:alice"
BOB = "4:+15551234567"
START = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "simulate_call_script", ROOT / "scripts" / "simulate_call.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


simulate = load_script()


def write_wav(folder: Path, name: str, samples: np.ndarray) -> Path:
    path = folder / name
    path.write_bytes(wav_bytes(samples, RATE))
    return path


@pytest.fixture
def two_voices(tmp_path: Path) -> tuple[Path, Path]:
    """Alice speaks for 1 s (50 frames), Bob for 0.5 s (25 frames)."""
    alice = write_wav(tmp_path, "alice.wav", synthetic_speech(1.0, pitch_hz=120.0, seed=1))
    bob = write_wav(tmp_path, "bob.wav", synthetic_speech(0.5, pitch_hz=210.0, seed=2))
    return alice, bob


def audio_data(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["audioData"] for m in messages if m["kind"] == "AudioData"]


# --- Frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "length"), [(16_000, 640), (24_000, 960)])
def test_metadata_comes_first_and_every_frame_is_20_ms(
    two_voices: tuple[Path, Path], rate: int, length: int
) -> None:
    streams = simulate.load_streams([(ALICE, two_voices[0])], [], rate)
    messages = list(simulate.messages_for(streams, rate, START, "sub-1"))
    assert messages[0] == {
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": "sub-1",
            "encoding": "PCM",
            "sampleRate": rate,
            "channels": 1,
            "length": length,
        },
    }
    frames = audio_data(messages[1:])
    assert len(frames) == len(messages) - 1 == 50
    assert {len(base64.b64decode(frame["data"], validate=True)) for frame in frames} == {length}


def test_the_last_frame_is_padded_to_20_ms() -> None:
    stream = simulate.Stream(ALICE, bytes(range(200)) * 5)  # 1000 bytes: 1.56 frames
    frames = list(simulate.frames_for([stream], 16_000, START))
    decoded = [base64.b64decode(frame["audioData"]["data"]) for frame in frames]
    assert [len(pcm) for pcm in decoded] == [640, 640]
    assert decoded[1] == stream.pcm[640:] + bytes(280)


def test_two_participants_interleave_round_robin_until_each_file_ends(
    two_voices: tuple[Path, Path],
) -> None:
    streams = simulate.load_streams([(ALICE, two_voices[0]), (BOB, two_voices[1])], [], 16_000)
    frames = list(simulate.frames_for(streams, 16_000, START))
    assert [frame["audioData"]["participantRawID"] for frame in frames] == (
        [ALICE, BOB] * 25 + [ALICE] * 25
    )
    for who in (ALICE, BOB):
        stamps = [
            datetime.fromisoformat(frame["audioData"]["timestamp"])
            for frame in frames
            if frame["audioData"]["participantRawID"] == who
        ]
        assert stamps == [START + timedelta(milliseconds=20 * i) for i in range(len(stamps))]


def test_timestamps_advance_20_ms_in_acs_format() -> None:
    start = datetime(2024, 11, 15, 21, 16, 12, 925_000, tzinfo=timezone(timedelta(hours=2)))
    frames = list(simulate.frames_for([simulate.Stream(ALICE, bytes(640 * 60))], 16_000, start))
    stamps = [frame["audioData"]["timestamp"] for frame in frames]
    assert stamps[:3] == [
        "2024-11-15T19:16:12.925Z",
        "2024-11-15T19:16:12.945Z",
        "2024-11-15T19:16:12.965Z",
    ]
    assert stamps[-1] == "2024-11-15T19:16:14.105Z"  # 59 frames later


def test_frames_in_a_silent_gap_are_flagged_silent(tmp_path: Path) -> None:
    speech = synthetic_speech(0.6, seed=3)
    gap = np.zeros(RATE, dtype=np.float32)  # frames 30 to 79
    path = write_wav(tmp_path, "gap.wav", np.concatenate([speech, gap, speech]))
    streams = simulate.load_streams([(ALICE, path)], [], 16_000)
    silent = [frame["audioData"]["silent"] for frame in simulate.frames_for(streams, 16_000, START)]
    assert len(silent) == 110
    assert all(silent[30:80])
    assert sum(not flag for flag in silent[:30]) >= 15
    assert sum(not flag for flag in silent[80:]) >= 15


def test_mixed_mode_sends_one_stream_without_participant(two_voices: tuple[Path, Path]) -> None:
    streams = simulate.load_streams([], list(two_voices), 16_000)
    assert [stream.raw_id for stream in streams] == [None]
    frames = list(simulate.frames_for(streams, 16_000, START))
    assert len(frames) == 50  # as long as the longer file
    assert all("participantRawID" not in frame["audioData"] for frame in frames)


def test_mixing_sums_and_clips() -> None:
    mixed = simulate.mix([np.full(4, 0.7, np.float32), np.full(2, 0.7, np.float32)])
    assert mixed.tolist() == pytest.approx([1.0, 1.0, 0.7, 0.7])


def test_the_service_parser_accepts_every_message(two_voices: tuple[Path, Path]) -> None:
    streams = simulate.load_streams([(ALICE, two_voices[0]), (BOB, two_voices[1])], [], 24_000)
    parser = StreamParser()
    parsed = [
        parser.feed_text(json.dumps(message))
        for message in simulate.messages_for(streams, 24_000, START, "sub")
    ]
    assert isinstance(parsed[0], AudioFormat) and parsed[0].sample_rate == 24_000
    assert all(isinstance(message, AudioFrame) for message in parsed[1:])
    assert parser.counters["dropped"] == 0


# --- The send loop against a local server -----------------------------------------------------


@dataclasses.dataclass
class Recorder:
    """A WebSocket server on a loopback port, in its own thread and event loop."""

    port: int = 0
    runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    close_with: tuple[int, str] | None = None  # close after the metadata with this

    async def handle(self, connection: ServerConnection) -> None:
        run: dict[str, Any] = {
            "path": connection.request.path if connection.request else "",
            "headers": dict(connection.request.headers) if connection.request else {},
            "messages": [],
        }
        self.runs.append(run)
        async for message in connection:
            run["messages"].append(json.loads(message))
            if self.close_with is not None:
                await connection.close(*self.close_with)
                return


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    async def main() -> None:
        async with serve(server.handle, "127.0.0.1", 0) as running:
            server.port = next(iter(running.sockets)).getsockname()[1]
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield server
    loop.call_soon_threadsafe(stop.set_result, None)
    thread.join(10)


@pytest.fixture
def fresh(recorder: Recorder) -> Recorder:
    recorder.runs.clear()
    recorder.close_with = None
    return recorder


def test_a_call_is_streamed_to_the_server(
    fresh: Recorder, two_voices: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = two_voices
    code = simulate.main(
        [
            "--url",
            f"ws://127.0.0.1:{fresh.port}/ws/acs",
            "--participant",
            f"{ALICE}={alice}",
            "--participant",
            f"{BOB}={bob}",
            "--call-id",
            "call-1",
            "--call-id-in-query",
            "--header",
            "Authorization: Bearer t0ken",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    [run] = fresh.runs
    assert run["path"] == "/ws/acs?call_id=call-1"
    assert run["headers"]["x-ms-call-connection-id"] == "call-1"
    assert run["headers"]["authorization"] == "Bearer t0ken"
    messages = run["messages"]
    assert messages[0]["kind"] == "AudioMetadata"
    frames = audio_data(messages)
    assert len(frames) == len(messages) - 1 == 75
    assert [frame["participantRawID"] for frame in frames[:4]] == [ALICE, BOB, ALICE, BOB]
    assert f"{ALICE}: 50 frame(s), 1.00 s" in out
    assert f"{BOB}: 25 frame(s), 0.50 s" in out


def test_realtime_paces_frames_at_20_ms(fresh: Recorder, tmp_path: Path) -> None:
    path = write_wav(tmp_path, "short.wav", synthetic_speech(0.3, seed=4))
    began = time.monotonic()
    code = simulate.main(
        ["--url", f"ws://127.0.0.1:{fresh.port}/", "--mixed", str(path), "--realtime"]
    )
    assert code == 0
    assert time.monotonic() - began >= 0.28
    assert len(audio_data(fresh.runs[0]["messages"])) == 15


def test_a_close_by_the_server_exits_non_zero_with_code_and_reason(
    fresh: Recorder, two_voices: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", f"ws://127.0.0.1:{fresh.port}/ws/acs", "--participant"]
    assert simulate.main([*argv, f"{ALICE}={two_voices[0]}"]) == 0
    fresh.close_with = (1008, "caller not allowed on this line")
    code = simulate.main([*argv, f"{ALICE}={two_voices[0]}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1008" in err and "caller not allowed on this line" in err
    assert len(fresh.runs) == 2
    assert fresh.runs[1]["messages"][0]["kind"] == "AudioMetadata"


def test_a_refused_connection_exits_non_zero(
    two_voices: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once it is closed
    code = simulate.main(["--url", f"ws://127.0.0.1:{port}/", "--mixed", str(two_voices[0])])
    assert code == 1
    assert "could not connect" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate.main(["--participant", "no-equals-sign"]) == 2
    assert simulate.main(["--participant", f"{ALICE}={tmp_path / 'missing.wav'}"]) == 2
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    assert simulate.main(["--mixed", str(tmp_path / "junk.wav")]) == 2
    err = capsys.readouterr().err
    assert "RAW_ID=PATH" in err and "missing.wav" in err and "junk.wav" in err


class FakeApi(BaseHTTPRequestHandler):
    """Claims answer 200; the events stream answers 404 once, then sends one event."""

    requests: ClassVar[list[tuple[str, str, bytes]]] = []
    finished: ClassVar[threading.Event] = threading.Event()

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append(("PUT", self.path, body))
        self._reply(200, b'{"claimed": true}', "application/json")

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, b""))
        if sum(method == "GET" for method, _, _ in self.requests) == 1:
            self._reply(404, b'{"error": "call_not_found"}', "application/json")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b': keep-alive\n\nevent: verdict\ndata: {"decision": "ACCEPT"}\n\n')
        self.wfile.flush()
        self.finished.wait(5)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_claims_and_events_go_to_the_http_api(
    fresh: Recorder,
    two_voices: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(simulate, "EVENTS_RETRY_SECONDS", 0.05)
    http = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        code = simulate.main(
            [
                "--url",
                f"ws://127.0.0.1:{fresh.port}/ws/acs",
                "--participant",
                f"{ALICE}={two_voices[0]}",
                "--call-id",
                "call/7",
                "--events",
                f"http://127.0.0.1:{http.server_address[1]}",
                "--claim",
                f"{ALICE}=alice",
                "--linger",
                "1",
            ]
        )
    finally:
        FakeApi.finished.set()
        http.shutdown()
        http.server_close()
    out = capsys.readouterr().out
    assert code == 0
    claims = [request for request in FakeApi.requests if request[0] == "PUT"]
    assert claims == [
        ("PUT", "/v1/calls/call%2F7/participants/8%3Aacs%3Aalice/claim", b'{"speaker_id": "alice"}')
    ]
    assert ("GET", "/v1/calls/call%2F7/events", b"") in FakeApi.requests
    assert 'claim 8:acs:alice as alice: HTTP 200 {"claimed": true}' in out
    assert "events: HTTP 404" in out
    assert 'event verdict: {"decision": "ACCEPT"}' in out
