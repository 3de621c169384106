"""Play audio files into the service as an Azure Communication Services call would.

ACS streams a live call to a WebSocket: one ``AudioMetadata`` message, then a JSON
``AudioData`` frame of 20 ms of base64 s16le PCM every 20 ms per participant
(shared/acs-protocol.md, section 1). This script does the same from files, so the live-call
path can be exercised without a phone.

Usage::

    # unmixed: one participant per file, their frames interleaved on one socket
    python scripts/simulate_call.py --url ws://127.0.0.1:8000/ws/acs \\
        --participant 8:acs:caller=caller.wav --participant 8:acs:agent=agent.flac

    # mixed: the files summed into one stream without participantRawID, at 24 kHz,
    # paced like a real call, with a bearer token
    python scripts/simulate_call.py --mixed call.wav --sample-rate 24000 --realtime \\
        --header "Authorization: Bearer $TOKEN"

    # claim who the caller says they are, and print the service's events as they come
    python scripts/simulate_call.py --call-id demo-1 --events http://127.0.0.1:8000 \\
        --participant 4:+15551234567=caller.wav --claim 4:+15551234567=alice --linger 3

Files in any format the service decodes (WAV, FLAC, Ogg) are decoded with the service's own
decoder to 16 kHz; ``--sample-rate 24000`` resamples that to 24 kHz. The last frame of a
file is padded with silence to a whole 20 ms; a frame quieter than -50 dBFS is sent with
``silent: true``. Frames go as fast as the socket takes them unless ``--realtime``.

The call ID travels in the ``x-ms-call-connection-id`` header as ACS sends it (and also as
the ``call_id`` query parameter with ``--call-id-in-query``). Claims (``PUT
{base}/v1/calls/{call_id}/participants/{raw_id}/claim``) are sent once the socket is open
and the metadata sent, before any audio; ``{base}`` is the ``--events`` URL, or the HTTP
equivalent of ``--url``'s host. A 404 from the claim or events endpoints is reported and
tolerated (the call may not be known yet, or the endpoint may not exist).

Exit status: 0 when every frame was sent and the socket closed normally; 1 when the
connection was refused or the server closed it (its close code and reason are printed);
2 for usage errors (bad arguments, unreadable audio).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import functools
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from biometrics.audio import SAMPLE_RATE, decode_audio
from biometrics.errors import BiometricsError

DEFAULT_URL = "ws://127.0.0.1:8000/ws/acs"
SAMPLE_RATES = (16_000, 24_000)
FRAME_MILLISECONDS = 20
SILENCE_DBFS = -50.0
EVENTS_RETRY_SECONDS = 0.5
HTTP_TIMEOUT_SECONDS = 10.0
MIXED_LABEL = "(mixed)"
CLOSE_REASONS = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1006: "closed without a close frame",
    1007: "invalid data",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
}


class UsageError(Exception):
    """Bad arguments or unreadable audio: nothing was sent."""


class CallFailed(Exception):
    """The server could not be reached, refused the socket, or closed it."""


# --- Frames (pure) --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stream:
    """One participant's audio as s16le mono PCM at the call's rate; raw_id None is mixed."""

    raw_id: str | None
    pcm: bytes

    @property
    def label(self) -> str:
        return MIXED_LABEL if self.raw_id is None else self.raw_id


def frame_bytes(sample_rate: int) -> int:
    """Bytes in 20 ms of 16-bit mono PCM: 640 at 16 kHz, 960 at 24 kHz."""
    return sample_rate * FRAME_MILLISECONDS // 1000 * 2


def metadata_message(subscription_id: str, sample_rate: int) -> dict[str, Any]:
    return {
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": subscription_id,
            "encoding": "PCM",
            "sampleRate": sample_rate,
            "channels": 1,
            "length": frame_bytes(sample_rate),
        },
    }


def format_timestamp(moment: datetime) -> str:
    """As ACS writes it: UTC, milliseconds, ``Z``."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frames_for(
    streams: Sequence[Stream],
    sample_rate: int,
    start: datetime,
    *,
    silence_dbfs: float = SILENCE_DBFS,
) -> Iterator[dict[str, Any]]:
    """``AudioData`` messages: frame i of every stream that has one, then frame i + 1.

    Frame i of each stream is stamped ``start + i * 20 ms``; a stream that has ended sends
    nothing more. The last frame of a stream is padded with silence to 20 ms.
    """
    size = frame_bytes(sample_rate)
    floor = 10.0 ** (silence_dbfs / 20.0)
    prepared = []
    for stream in streams:
        count = -(-len(stream.pcm) // size)
        padded = stream.pcm.ljust(count * size, b"\x00")
        samples = np.frombuffer(padded, dtype="<i2").reshape(count, size // 2) / 32768.0
        silent = np.sqrt(np.mean(np.square(samples), axis=1)) < floor
        prepared.append((stream.raw_id, padded, silent.tolist()))
    rounds = max((len(silent) for _, _, silent in prepared), default=0)
    for index in range(rounds):
        stamp = format_timestamp(start + timedelta(milliseconds=FRAME_MILLISECONDS * index))
        for raw_id, padded, silent in prepared:
            if index < len(silent):
                chunk = padded[index * size : (index + 1) * size]
                yield audio_message(raw_id, stamp, chunk, silent[index])


def audio_message(raw_id: str | None, timestamp: str, pcm: bytes, silent: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"timestamp": timestamp}
    if raw_id is not None:  # mixed audio: ACS documents no participant, so send none
        data["participantRawID"] = raw_id
    data["data"] = base64.b64encode(pcm).decode("ascii")
    data["silent"] = bool(silent)
    return {"kind": "AudioData", "audioData": data}


def messages_for(
    streams: Sequence[Stream], sample_rate: int, start: datetime, subscription_id: str
) -> Iterator[dict[str, Any]]:
    """The whole call: the metadata, then every frame."""
    yield metadata_message(subscription_id, sample_rate)
    yield from frames_for(streams, sample_rate, start)


def to_pcm(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def mix(signals: Sequence[np.ndarray]) -> np.ndarray:
    """The sum of the signals, padded to the longest and clipped to [-1, 1]."""
    mixed = np.zeros(max((len(signal) for signal in signals), default=0), dtype=np.float64)
    for signal in signals:
        mixed[: len(signal)] += signal
    return np.clip(mixed, -1.0, 1.0).astype(np.float32)


# --- Audio files ------------------------------------------------------------------------------


def load_samples(path: Path, sample_rate: int) -> np.ndarray:
    """A file decoded by the service's decoder (16 kHz), resampled to ``sample_rate``."""
    try:
        samples = decode_audio(path.read_bytes())
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    except BiometricsError as error:
        raise UsageError(f"{path}: {error.detail}") from None
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, SAMPLE_RATE, sample_rate).astype(np.float32)
    return samples


def load_streams(
    participants: Sequence[tuple[str, Path]], mixed: Sequence[Path], sample_rate: int
) -> list[Stream]:
    if mixed:
        return [Stream(None, to_pcm(mix([load_samples(path, sample_rate) for path in mixed])))]
    return [
        Stream(raw_id, to_pcm(load_samples(path, sample_rate))) for raw_id, path in participants
    ]


# --- The WebSocket ----------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    frames: dict[str, int] = dataclasses.field(default_factory=dict)
    wall_seconds: float = 0.0

    def count(self, message: dict[str, Any]) -> None:
        label = message["audioData"].get("participantRawID") or MIXED_LABEL
        self.frames[label] = self.frames.get(label, 0) + 1


async def stream_call(
    url: str,
    headers: dict[str, str],
    messages: Iterable[dict[str, Any]],
    start: datetime,
    *,
    realtime: bool = False,
    linger: float = 0.0,
    after_metadata: Callable[[], None] | None = None,
) -> Report:
    """Send ``messages`` (metadata first) and close; raise CallFailed if the server objects.

    ``after_metadata`` runs in a thread once the metadata is sent. With ``realtime`` a frame
    leaves when its 20 ms have passed since ``start`` by the clock; otherwise at once,
    yielding to the event loop after each so that a close from the server is noticed.
    """
    report = Report()
    began = time.monotonic()
    try:
        async with connect(
            url,
            additional_headers=headers,
            compression=None,  # ACS does not compress; base64 PCM barely would
            proxy=None,
            open_timeout=HTTP_TIMEOUT_SECONDS,
        ) as websocket:
            await _send_all(websocket, messages, start, report, realtime, after_metadata)
            if linger > 0:
                with contextlib.suppress(TimeoutError):  # still open, as it should be
                    await asyncio.wait_for(websocket.wait_closed(), linger)
        closed = websocket.close_exc  # a close during the frames raised from send() already
        if closed.rcvd is None or closed.rcvd.code != 1000:
            raise closed
    except ConnectionClosed as closed:
        raise CallFailed(describe_close(closed, report)) from None
    except InvalidStatus as error:
        status = error.response.status_code
        raise CallFailed(f"the server refused the WebSocket at {url}: HTTP {status}") from None
    except InvalidURI as error:
        raise UsageError(f"--url: {error}") from None
    except (OSError, TimeoutError, InvalidHandshake) as error:
        raise CallFailed(f"could not connect to {url}: {error}") from None
    finally:
        report.wall_seconds = time.monotonic() - began
    return report


async def _send_all(
    websocket: ClientConnection,
    messages: Iterable[dict[str, Any]],
    start: datetime,
    report: Report,
    realtime: bool,
    after_metadata: Callable[[], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    opened = loop.time()
    for message in messages:
        if message["kind"] == "AudioData":
            if realtime:
                spoken = datetime.fromisoformat(message["audioData"]["timestamp"]) - start
                delay = opened + spoken.total_seconds() + FRAME_MILLISECONDS / 1000 - loop.time()
                await asyncio.sleep(max(delay, 0.0))
            await websocket.send(json.dumps(message, separators=(",", ":")))
            report.count(message)
            if not realtime:
                await asyncio.sleep(0)
        else:
            await websocket.send(json.dumps(message, separators=(",", ":")))
            if message["kind"] == "AudioMetadata" and after_metadata is not None:
                await asyncio.to_thread(after_metadata)
                opened = loop.time()


def describe_close(closed: ConnectionClosed, report: Report) -> str:
    sent = sum(report.frames.values())
    if closed.rcvd is None:
        return f"the connection was lost after {sent} frame(s), without a close frame (1006)"
    code, reason = closed.rcvd.code, closed.rcvd.reason
    name = CLOSE_REASONS.get(code, "")
    return (
        f"the server closed the connection after {sent} frame(s): {code}"
        + (f" ({name})" if name else "")
        + (f" {reason}" if reason else " with no reason given")
    )


# --- HTTP: claims and events ------------------------------------------------------------------


class Http:
    """The service's HTTP side, at ``base`` (which may carry a path prefix)."""

    def __init__(self, base: str) -> None:
        parts = urllib.parse.urlsplit(base.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"expected an http:// or https:// URL, not {base!r}")
        self.base = base.rstrip("/")
        self._secure = parts.scheme == "https"
        self._netloc = parts.netloc
        self._prefix = parts.path

    def connection(self, timeout: float | None) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
        return kind(self._netloc, timeout=timeout)

    def call_path(self, call_id: str, *parts: str) -> str:
        return "/".join([self._prefix, "v1", "calls", quote(call_id), *parts])

    def claim(self, call_id: str, raw_id: str, speaker_id: str) -> tuple[int, str]:
        path = self.call_path(call_id, "participants", quote(raw_id), "claim")
        body = json.dumps({"speaker_id": speaker_id}).encode()
        connection = self.connection(HTTP_TIMEOUT_SECONDS)
        try:
            connection.request(
                "PUT",
                path,
                body=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", "replace").strip()
        finally:
            connection.close()


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def send_claims(api: Http, call_id: str, claims: Sequence[tuple[str, str]], out: TextIO) -> None:
    for raw_id, speaker_id in claims:
        try:
            status, body = api.claim(call_id, raw_id, speaker_id)
        except (OSError, http.client.HTTPException) as error:
            print(f"claim {raw_id} as {speaker_id}: no answer ({error})", file=out, flush=True)
            continue
        note = " (no such call or no claim endpoint yet: streaming anyway)" if status == 404 else ""
        print(f"claim {raw_id} as {speaker_id}: HTTP {status}{note} {body}", file=out, flush=True)


class EventPrinter(threading.Thread):
    """Follows ``GET {base}/v1/calls/{call_id}/events`` (server-sent events) and prints each
    event as it arrives. A 404 (the call not known yet, or no such endpoint) or a refused
    connection is retried every ``EVENTS_RETRY_SECONDS`` until :meth:`stop`."""

    def __init__(self, api: Http, call_id: str, out: TextIO) -> None:
        super().__init__(name="sse-events", daemon=True)
        self._api = api
        self._path = api.call_path(call_id, "events")
        self._out = out
        self._stopping = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self._socket: socket.socket | None = None  # kept: a close-delimited reply drops it
        self._said: set[str] = set()
        self.events = 0

    def stop(self, wait: float = 1.0) -> None:
        self._stopping.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked read
        self.join(wait)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except (OSError, http.client.HTTPException) as error:
                if not self._stopping.is_set():
                    self._say_once("error", f"events: {self._api.base}: {error}; retrying")
            finally:
                if self._connection is not None:
                    self._connection.close()
            self._stopping.wait(EVENTS_RETRY_SECONDS)

    def _follow(self) -> None:
        self._connection = self._api.connection(HTTP_TIMEOUT_SECONDS)
        self._connection.request("GET", self._path, headers={"Accept": "text/event-stream"})
        self._socket = self._connection.sock
        if self._stopping.is_set():
            return
        response = self._connection.getresponse()
        if response.status == 404:  # said once: the call may not be known until it streams
            response.read()
            self._say_once("404", f"events: HTTP 404 at {self._path}; retrying")
            return
        if response.status != 200:
            body = response.read(500).decode("utf-8", "replace").strip()
            self._say_once(str(response.status), f"events: HTTP {response.status} {body}; retrying")
            return
        if self._socket is not None:
            self._socket.settimeout(None)  # events may be minutes apart
        name, data = "message", []
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if data:
                    self.events += 1
                    self._say(f"event {name}: " + "\n".join(data))
                name, data = "message", []
            elif line.startswith(":"):
                continue  # a comment: keep-alive
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
                    data.append(value)
                elif field == "event":
                    name = value

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self._say(text)


# --- Command line -----------------------------------------------------------------------------


def parse_pair(value: str, what: str) -> tuple[str, str]:
    key, sep, rest = value.partition("=")
    if not sep or not key or not rest:
        raise UsageError(f"expected {what}, got {value!r}")
    return key, rest


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Stream audio files to the service as an ACS call.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"WebSocket URL (default {DEFAULT_URL})")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--participant",
        action="append",
        default=[],
        metavar="RAW_ID=PATH",
        help="unmixed: one participant's audio file (repeatable)",
    )
    source.add_argument(
        "--mixed",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="mixed: files summed into one stream without participantRawID (repeatable)",
    )
    parser.add_argument("--call-id", help="sent as x-ms-call-connection-id (default: random)")
    parser.add_argument("--call-id-in-query", action="store_true", help="also send it as ?call_id=")
    parser.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="extra header"
    )
    parser.add_argument("--sample-rate", type=int, choices=SAMPLE_RATES, default=16_000)
    parser.add_argument("--realtime", action="store_true", help="pace frames at 20 ms")
    parser.add_argument("--events", metavar="URL", help="base HTTP URL: print the call's events")
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="RAW_ID=SPEAKER_ID",
        help="claim a participant's identity before the audio (repeatable)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the socket open this long after the last frame (to see late events)",
    )
    return parser.parse_args(argv)


def http_base(args: argparse.Namespace) -> str:
    if args.events:
        return str(args.events)
    parts = urllib.parse.urlsplit(args.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urllib.parse.urlunsplit((scheme, parts.netloc, "", "", ""))


def socket_url(url: str, call_id: str, in_query: bool) -> str:
    if not in_query:
        return url
    parts = urllib.parse.urlsplit(url)
    query = "&".join(filter(None, [parts.query, urllib.parse.urlencode({"call_id": call_id})]))
    return urllib.parse.urlunsplit(parts._replace(query=query))


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    participants = [parse_pair(value, "RAW_ID=PATH") for value in args.participant]
    raw_ids = [raw_id for raw_id, _ in participants]
    if len(set(raw_ids)) != len(raw_ids):
        raise UsageError("each --participant needs its own RAW_ID")
    claims = [parse_pair(value, "RAW_ID=SPEAKER_ID") for value in args.claim]
    headers: dict[str, str] = {}
    for value in args.header:
        name, sep, header_value = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header expects NAME:VALUE, got {value!r}")
        headers[name.strip()] = header_value.strip()
    call_id = args.call_id or str(uuid.uuid4())
    headers = {
        "x-ms-call-connection-id": call_id,
        "x-ms-call-correlation-id": str(uuid.uuid4()),
        **headers,
    }
    api = Http(http_base(args)) if args.events or claims else None

    streams = load_streams(
        [(raw_id, Path(path)) for raw_id, path in participants], args.mixed, args.sample_rate
    )
    start = datetime.now(UTC)
    messages = messages_for(streams, args.sample_rate, start, str(uuid.uuid4()))
    print(
        f"call {call_id}: {len(streams)} stream(s) at {args.sample_rate} Hz to {args.url}",
        file=out,
        flush=True,
    )

    printer = EventPrinter(api, call_id, out) if api is not None and args.events else None
    if printer is not None:
        printer.start()
    after_metadata = None
    if api is not None and claims:
        after_metadata = functools.partial(send_claims, api, call_id, claims, out)
    try:
        report = asyncio.run(
            stream_call(
                socket_url(args.url, call_id, args.call_id_in_query),
                headers,
                messages,
                start,
                realtime=args.realtime,
                linger=args.linger,
                after_metadata=after_metadata,
            )
        )
    except CallFailed as error:
        print(f"simulate_call: {error}", file=err, flush=True)
        return 1
    finally:
        if printer is not None:
            printer.stop()

    seconds = FRAME_MILLISECONDS / 1000
    total = sum(report.frames.values())
    print(
        f"sent {total} frame(s) in {report.wall_seconds:.2f} s; per stream:",
        file=out,
    )
    for stream in streams:
        frames = report.frames.get(stream.label, 0)
        print(f"  {stream.label}: {frames} frame(s), {frames * seconds:.2f} s of audio", file=out)
    out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, sys.stdout, sys.stderr)
    except UsageError as error:
        print(f"simulate_call: {error}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
