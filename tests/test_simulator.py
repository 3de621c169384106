"""biometrics.simulator (``biometrics simulate-call``): the frames it makes (pure, no server),
its send loop against a small local WebSocket server that records what arrives or closes on
it, and its claims and events against the real service."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from biometrics import cli
from biometrics import simulator as simulate
from biometrics.streaming import AudioFormat, AudioFrame, StreamParser
from tests.streaming.helpers import live_settings, voice
from tests.voices import RATE, synthetic_speech, wav_bytes

ALICE = "8:acs:alice"
BOB = "4:+15551234567"
START = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)


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


def parsed(messages: list[str]) -> list[object]:
    parser = StreamParser()
    return [parser.feed_text(message) for message in messages]


# --- Frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "length"), [(16_000, 640), (24_000, 960)])
def test_metadata_comes_first_and_every_frame_is_20_ms(
    two_voices: tuple[Path, Path], rate: int, length: int
) -> None:
    streams = simulate.load_streams([(ALICE, two_voices[0])], [], rate)
    messages = parsed(list(simulate.messages_for(streams, rate, START, "sub-1")))
    assert messages[0] == AudioFormat("sub-1", rate, 1, length)
    frames = messages[1:]
    assert len(frames) == 50 and all(isinstance(frame, AudioFrame) for frame in frames)
    assert {len(frame.pcm) for frame in frames if isinstance(frame, AudioFrame)} == {length}


def test_the_last_frame_is_padded_to_20_ms() -> None:
    stream = simulate.Stream(ALICE, bytes(range(200)) * 5)  # 1000 bytes: 1.56 frames
    frames = list(simulate.frames_for([stream], 16_000, START))
    assert [len(frame.pcm) for frame in frames] == [640, 640]
    assert frames[1].pcm == stream.pcm[640:] + bytes(280)


def test_two_participants_interleave_round_robin_until_each_file_ends(
    two_voices: tuple[Path, Path],
) -> None:
    streams = simulate.load_streams([(ALICE, two_voices[0]), (BOB, two_voices[1])], [], 16_000)
    frames = list(simulate.frames_for(streams, 16_000, START))
    assert [frame.participant_raw_id for frame in frames] == [ALICE, BOB] * 25 + [ALICE] * 25
    for who in (ALICE, BOB):
        stamps = [frame.timestamp for frame in frames if frame.participant_raw_id == who]
        assert stamps == [START + timedelta(milliseconds=20 * i) for i in range(len(stamps))]


def test_timestamps_advance_20_ms_in_acs_format() -> None:
    start = datetime(2024, 11, 15, 21, 16, 12, 925_000, tzinfo=timezone(timedelta(hours=2)))
    streams = [simulate.Stream(ALICE, bytes(640 * 60))]
    messages = [json.loads(m) for m in simulate.messages_for(streams, 16_000, start, "s")]
    stamps = [frame["timestamp"] for frame in audio_data(messages)]
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
    silent = [frame.silent for frame in simulate.frames_for(streams, 16_000, START)]
    assert len(silent) == 110
    assert all(silent[30:80])
    assert sum(not flag for flag in silent[:30]) >= 15
    assert sum(not flag for flag in silent[80:]) >= 15


def test_mixed_mode_sends_one_stream_naming_no_participant(two_voices: tuple[Path, Path]) -> None:
    streams = simulate.load_streams([], list(two_voices), 16_000)
    assert [stream.raw_id for stream in streams] == [None]
    messages = list(simulate.messages_for(streams, 16_000, START, "s"))
    assert len(messages) == 1 + 50  # as long as the longer file
    frames = audio_data([json.loads(m) for m in messages])
    assert all("participantRawID" not in frame for frame in frames)


def test_mixing_sums_and_clips() -> None:
    mixed = simulate.mix([np.full(4, 0.7, np.float32), np.full(2, 0.7, np.float32)])
    assert mixed.tolist() == pytest.approx([1.0, 1.0, 0.7, 0.7])


def test_the_service_parser_reads_back_every_frame(two_voices: tuple[Path, Path]) -> None:
    streams = simulate.load_streams([(ALICE, two_voices[0]), (BOB, two_voices[1])], [], 24_000)
    parser = StreamParser()
    messages = list(simulate.messages_for(streams, 24_000, START, "sub"))
    read = [parser.feed_text(message) for message in messages]
    assert read[0] == simulate.call_format(24_000, "sub")
    assert read[1:] == list(simulate.frames_for(streams, 24_000, START))
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
            "read": threading.Event(),
        }
        self.runs.append(run)
        try:
            async for message in connection:
                run["messages"].append(json.loads(message))
                if self.close_with is not None:
                    break
        finally:
            run["read"].set()
        if self.close_with is not None:
            await connection.close(*self.close_with)

    def read_runs(self) -> list[dict[str, Any]]:
        """The runs, once this server has read each as far as it will: the client's close
        can complete before the handler has taken the last frames off the socket's queue."""
        for run in self.runs:
            assert run["read"].wait(10)
        return self.runs


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
    code = cli.main(
        [
            "simulate-call",
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
    [run] = fresh.read_runs()
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
    code = cli.main(
        [
            "simulate-call",
            "--url",
            f"ws://127.0.0.1:{fresh.port}/",
            "--realtime",
            "--mixed",
            str(path),
        ]
    )
    assert code == 0
    assert time.monotonic() - began >= 0.28
    assert len(audio_data(fresh.read_runs()[0]["messages"])) == 15


def test_a_close_by_the_server_exits_non_zero_with_code_and_reason(
    fresh: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Long enough that the close comes mid-call, as a service's does (a close that crosses
    # the client's own closing handshake waits out websockets' close timeout).
    call = write_wav(tmp_path, "long.wav", synthetic_speech(10.0, seed=6))
    argv = ["simulate-call", "--url", f"ws://127.0.0.1:{fresh.port}/ws/acs", "--participant"]
    assert cli.main([*argv, f"{ALICE}={call}"]) == 0
    fresh.close_with = (1008, "caller not allowed on this line")
    code = cli.main([*argv, f"{ALICE}={call}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1008" in err and "caller not allowed on this line" in err
    assert len(fresh.runs) == 2
    assert fresh.read_runs()[1]["messages"][0]["kind"] == "AudioMetadata"


def test_a_refused_connection_exits_non_zero(
    two_voices: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once it is closed
    code = cli.main(
        ["simulate-call", "--url", f"ws://127.0.0.1:{port}/", "--mixed", str(two_voices[0])]
    )
    assert code == 1
    assert "could not connect" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as bad_pair:
        cli.main(["simulate-call", "--participant", "no-equals-sign"])
    assert bad_pair.value.code == 2
    missing = tmp_path / "missing.wav"
    assert cli.main(["simulate-call", "--participant", f"{ALICE}={missing}"]) == 2
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    assert cli.main(["simulate-call", "--mixed", str(tmp_path / "junk.wav")]) == 2
    twice = ["--participant", f"{ALICE}={missing}"] * 2
    assert cli.main(["simulate-call", *twice]) == 2
    err = capsys.readouterr().err
    assert "RAW_ID=PATH" in err and "missing.wav" in err and "junk.wav" in err
    assert "each participant needs its own raw id" in err


# --- Claims and events, against the real service ------------------------------------------------


@pytest.fixture
def settings(settings):
    return live_settings(settings)


def test_claims_are_sent_before_the_audio_and_events_followed_to_the_end(
    live_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    caller = write_wav(tmp_path, "caller.wav", voice(3.0, "a", seed=5))
    with httpx.Client(base_url=live_server.url, headers=live_server.headers) as http:
        http.post("/v1/speakers", json={"speaker_id": "alice"}).raise_for_status()
    options = simulate.Options(
        url=live_server.url.replace("http://", "ws://") + "/ws/acs",
        participants=[(BOB, caller)],
        call_id="call 7:x",  # travels in a header; URL-encoded in the API's paths
        claims=[(BOB, "alice"), ("8:acs:nobody", "nobody")],
        events=True,
        api_key=live_server.api_key,  # claims, events and the socket
    )
    report = simulate.simulate(options, sys.stdout)
    out = capsys.readouterr().out.splitlines()
    assert report.frames == {BOB: 150}
    # The claim goes once the metadata is sent; the service may not have read it yet.
    claimed = f"claim {BOB} as alice: claimed (call "
    assert any(line in (claimed + "PENDING)", claimed + "ONGOING)") for line in out)
    assert "claim 8:acs:nobody as nobody: HTTP 404 speaker_not_found" in " ".join(out)
    events = [line for line in out if line.startswith("event ")]
    assert events[0].startswith("event call.started:")
    assert any(line.startswith("event verdict.changed:") for line in events)
    assert events[-1].startswith("event call.ended:")
    assert not any("404" in line for line in out if line.startswith("events"))
