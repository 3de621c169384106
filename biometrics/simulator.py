"""Play audio files into the service as an Azure Communication Services call would.

ACS streams a live call to a WebSocket: one ``AudioMetadata`` message, then an ``AudioData``
frame of 20 ms of s16le PCM every 20 ms per participant (shared/acs-protocol.md, section
1). The simulator does the same from files, with the service's own decoder and protocol
encoder, so the live-call path can be exercised without a phone (``biometrics
simulate-call``).

Files are decoded to 16 kHz (``biometrics.audio.decode_audio``) and resampled for a 24 kHz
call. The last frame of a file is padded with silence to a whole 20 ms; a frame quieter
than -50 dBFS is sent with ``silent: true``. Unmixed, each file is one participant and their
frames interleave on one socket; mixed, the files are summed into one stream that names no
participant. Frames go as fast as the socket takes them unless ``realtime``.

The call id travels in the ``x-ms-call-connection-id`` header as ACS sends it (and also as
the ``call_id`` query parameter if asked). Claims are sent once the socket is open and the
metadata sent, before any audio; the call's events are followed from then on, until
``call.ended`` (a 404 before the service has taken the socket is retried quietly).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from biometrics.audio import SAMPLE_RATE, decode_audio
from biometrics.client import ApiError, Client, ClientError
from biometrics.errors import BiometricsError
from biometrics.streaming.protocol import (
    AudioFormat,
    AudioFrame,
    encode_audio,
    encode_metadata,
)

DEFAULT_URL = "ws://127.0.0.1:8000/ws/acs"
SAMPLE_RATES = (16_000, 24_000)
FRAME = timedelta(milliseconds=20)
SILENCE_DBFS = -50.0
CONNECT_TIMEOUT_SECONDS = 10.0
EVENTS_RETRY_SECONDS = 0.2  # while the service has not taken the socket yet
EVENTS_DRAIN_SECONDS = 10.0  # after the socket closed, for the last verdict and call.ended
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
    return 2 * sample_rate * FRAME // timedelta(seconds=1)


def call_format(sample_rate: int, subscription_id: str) -> AudioFormat:
    """What the call announces: 20 ms frames, as ACS does."""
    return AudioFormat(subscription_id, sample_rate, 1, frame_bytes(sample_rate))


def frames_for(
    streams: Sequence[Stream],
    sample_rate: int,
    start: datetime,
    *,
    silence_dbfs: float = SILENCE_DBFS,
) -> Iterator[AudioFrame]:
    """Frame i of every stream that has one, then frame i + 1, each stamped
    ``start + i * 20 ms``; the last frame of a stream is padded with silence to 20 ms."""
    size = frame_bytes(sample_rate)
    floor = 10.0 ** (silence_dbfs / 20.0)
    prepared = []
    for stream in streams:
        count = -(-len(stream.pcm) // size)
        padded = stream.pcm.ljust(count * size, b"\x00")
        samples = np.frombuffer(padded, dtype="<i2").reshape(count, size // 2) / 32768.0
        silent = np.sqrt(np.mean(np.square(samples), axis=1)) < floor
        prepared.append((stream.raw_id, padded, [bool(flag) for flag in silent]))
    rounds = max((len(silent) for _, _, silent in prepared), default=0)
    for index in range(rounds):
        stamp = start + index * FRAME
        for raw_id, padded, silent in prepared:
            if index < len(silent):
                pcm = padded[index * size : (index + 1) * size]
                yield AudioFrame(stamp, raw_id, pcm, silent[index])


def messages_for(
    streams: Sequence[Stream], sample_rate: int, start: datetime, subscription_id: str
) -> Iterator[str]:
    """The whole call as it goes on the wire: the metadata, then every frame."""
    yield encode_metadata(call_format(sample_rate, subscription_id))
    for frame in frames_for(streams, sample_rate, start):
        yield encode_audio(frame)


def to_pcm(samples: np.ndarray) -> bytes:
    return bytes(np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


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
    frames: dict[str, int] = dataclasses.field(default_factory=dict)  # by stream label
    wall_seconds: float = 0.0

    def count(self, frame: AudioFrame) -> None:
        label = MIXED_LABEL if frame.participant_raw_id is None else frame.participant_raw_id
        self.frames[label] = self.frames.get(label, 0) + 1


async def stream_call(
    url: str,
    headers: Mapping[str, str],
    audio_format: AudioFormat,
    frames: Iterable[AudioFrame],
    *,
    realtime: bool = False,
    linger: float = 0.0,
    after_metadata: Callable[[], Awaitable[None]] | None = None,
) -> Report:
    """Send the metadata, then ``frames``, and close; raise CallFailed if the server objects.

    ``after_metadata`` runs once the metadata is sent. With ``realtime`` each frame leaves
    when its 20 ms have passed, counted from the first frame's timestamp; otherwise at once,
    yielding to the event loop after each so that a close from the server is noticed.
    ``linger`` keeps the socket open that long after the last frame."""
    report = Report()
    began = time.monotonic()
    try:
        async with connect(
            url,
            additional_headers=dict(headers),
            compression=None,  # ACS does not compress; base64 PCM barely would
            proxy=None,
            open_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as websocket:
            await websocket.send(encode_metadata(audio_format))
            if after_metadata is not None:
                await after_metadata()
            await _send_frames(websocket, frames, report, realtime)
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
        raise UsageError(f"{error}") from None
    except (OSError, TimeoutError, InvalidHandshake) as error:
        raise CallFailed(f"could not connect to {url}: {error}") from None
    finally:
        report.wall_seconds = time.monotonic() - began
    return report


async def _send_frames(
    websocket: ClientConnection, frames: Iterable[AudioFrame], report: Report, realtime: bool
) -> None:
    loop = asyncio.get_running_loop()
    opened = loop.time()
    first: datetime | None = None
    for frame in frames:
        if realtime:
            first = first or frame.timestamp
            spoken = (frame.timestamp - first + FRAME).total_seconds()
            await asyncio.sleep(max(opened + spoken - loop.time(), 0.0))
        await websocket.send(encode_audio(frame))
        report.count(frame)
        if not realtime:
            await asyncio.sleep(0)


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


# --- Claims and events, over the REST API ---------------------------------------------------


def send_claims(api: Client, call_id: str, claims: Sequence[tuple[str, str]], out: TextIO) -> None:
    for raw_id, speaker_id in claims:
        try:
            participant = api.claim(call_id, raw_id, speaker_id)
        except ClientError as error:
            print(f"claim {raw_id} as {speaker_id}: {error}", file=out, flush=True)
        else:
            print(
                f"claim {raw_id} as {speaker_id}: claimed (call {participant.call_status})",
                file=out,
                flush=True,
            )


class EventPrinter(threading.Thread):
    """Prints the call's server-sent events as they arrive, until ``call.ended``.

    A daemon thread, so that a service that never ends the stream cannot keep the command
    from exiting. Until ``socket_closed`` is set, a 404 means the service has not taken the
    socket yet and is retried quietly; after it, the 404 is printed."""

    def __init__(self, api: Client, call_id: str, out: TextIO) -> None:
        super().__init__(name="call-events", daemon=True)
        self._api = api
        self._call_id = call_id
        self._out = out
        self.socket_closed = threading.Event()
        self.events = 0

    def run(self) -> None:
        while True:
            try:
                for event in self._api.events(self._call_id):
                    self.events += 1
                    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
                    print(f"event {event.type}: {data}", file=self._out, flush=True)
                return
            except ApiError as error:
                if error.status != 404 or self.socket_closed.is_set():
                    print(f"events: {error}", file=self._out, flush=True)
                    return
            except ClientError as error:
                print(f"events: {error}", file=self._out, flush=True)
                return
            self.socket_closed.wait(EVENTS_RETRY_SECONDS)


# --- One simulated call ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Options:
    """What to play and where: ``participants`` (raw id, file) or ``mixed`` files."""

    url: str = DEFAULT_URL
    participants: Sequence[tuple[str, Path]] = ()
    mixed: Sequence[Path] = ()
    call_id: str | None = None  # default: a random UUID
    call_id_in_query: bool = False
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sample_rate: int = 16_000
    realtime: bool = False
    claims: Sequence[tuple[str, str]] = ()  # (raw id, speaker id)
    events: bool = False  # print the call's events
    api_url: str | None = None  # the REST API; default: the socket's host over http(s)
    api_key: str | None = None
    linger: float = 0.0


def simulate(options: Options, out: TextIO) -> Report:
    """Stream one call and print what happens; raise UsageError or CallFailed."""
    raw_ids = [raw_id for raw_id, _ in options.participants]
    if len(set(raw_ids)) != len(raw_ids):
        raise UsageError("each participant needs its own raw id")
    if options.sample_rate not in SAMPLE_RATES:
        raise UsageError(f"the sample rate must be 16000 or 24000, not {options.sample_rate}")
    streams = load_streams(options.participants, options.mixed, options.sample_rate)
    if not streams:
        raise UsageError("nothing to play: give participants or mixed files")
    call_id = options.call_id or str(uuid.uuid4())
    headers = {
        "x-ms-call-connection-id": call_id,
        "x-ms-call-correlation-id": str(uuid.uuid4()),
        # The API key (a stream or admin one) opens the socket too, unless a header says
        # otherwise (e.g. an ACS token).
        **({"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}),
        **options.headers,
    }
    needs_api = options.events or bool(options.claims)
    api = _api(options) if needs_api else None
    start = datetime.now(UTC)
    print(
        f"call {call_id}: {len(streams)} stream(s) at {options.sample_rate} Hz to {options.url}",
        file=out,
        flush=True,
    )
    printer = EventPrinter(api, call_id, out) if api is not None and options.events else None

    async def after_metadata() -> None:
        if api is not None and options.claims:
            await asyncio.to_thread(send_claims, api, call_id, options.claims, out)
        if printer is not None:
            printer.start()

    try:
        report = asyncio.run(
            stream_call(
                socket_url(options.url, call_id, options.call_id_in_query),
                headers,
                call_format(options.sample_rate, str(uuid.uuid4())),
                frames_for(streams, options.sample_rate, start),
                realtime=options.realtime,
                linger=options.linger,
                after_metadata=after_metadata,
            )
        )
    finally:
        if printer is not None and printer.is_alive():
            printer.socket_closed.set()
            printer.join(EVENTS_DRAIN_SECONDS)
        if api is not None:
            api.close()

    total = sum(report.frames.values())
    print(f"sent {total} frame(s) in {report.wall_seconds:.2f} s; per stream:", file=out)
    for stream in streams:
        frames = report.frames.get(stream.label, 0)
        seconds = frames * FRAME.total_seconds()
        print(f"  {stream.label}: {frames} frame(s), {seconds:.2f} s of audio", file=out)
    out.flush()
    return report


def _api(options: Options) -> Client:
    try:
        return Client(options.api_url or http_base(options.url), api_key=options.api_key)
    except ValueError as error:
        raise UsageError(str(error)) from None


def http_base(url: str) -> str:
    """The REST API beside a socket URL: ws://host/ws/acs -> http://host."""
    parts = urllib.parse.urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urllib.parse.urlunsplit((scheme, parts.netloc, "", "", ""))


def socket_url(url: str, call_id: str, in_query: bool) -> str:
    if not in_query:
        return url
    parts = urllib.parse.urlsplit(url)
    query = "&".join(filter(None, [parts.query, urllib.parse.urlencode({"call_id": call_id})]))
    return urllib.parse.urlunsplit(parts._replace(query=query))
