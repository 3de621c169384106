"""A fault soak: live calls against a real ``biometrics serve`` while faults are injected,
and an account of where every frame, verdict and event went.

The soak starts the service as a subprocess (its own folder, auth on, an admin and a stream
key made with ``biometrics keys create``), a webhook receiver of its own, and enrolls
speakers from a folder of real speech over the REST API. Then, wave after wave until the
time is up, it plays ``calls`` two-participant calls at once over ``/ws/acs`` (the caller
claimed over REST as an enrolled speaker, genuinely or by an impostor; the agent
unclaimed), follows each call's server-sent events, and injects in every wave each fault
that is turned on:

- ``disconnect``: half the calls lose their socket without a close frame, then reconnect
  with the same call id, which resumes the call;
- ``malformed``: the other half get one bad message mid-call (bad JSON, bad base64, an
  unknown kind, an oversized message), and throwaway sockets get one each; every outcome
  (the socket kept, or closed with a code) is checked against the documented one;
- ``database``: PostgreSQL made unreachable for a few seconds, by switching off a TCP proxy
  in front of it or by a restart command (SQLite has no such fault);
- ``webhook``: the receiver refuses (503) or drops every delivery for a few seconds.

At the end the service is stopped with SIGTERM and the report counts frames sent and
processed, verdicts produced (over SSE) and persisted (the REST verdict history), events
delivered to the webhook receiver (unique ids) or dead-lettered, faults by kind, errors
(5xx, unexpected close codes, exceptions, a non-zero exit) and what was lost.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from biometrics import bulk_enrollment, simulator
from biometrics.client import ApiError, Client, ClientError, RetryPolicy
from biometrics.config import Settings
from biometrics.events.webhooks import SIGNATURE_HEADER, verify_signature
from biometrics.streaming.protocol import AudioFrame, encode_audio, encode_metadata

logger = logging.getLogger(__name__)

FAULT_KINDS = ("disconnect", "malformed", "database", "webhook")
MALFORMED_KINDS = ("bad_json", "bad_base64", "wrong_kind", "oversized")
# Throwaway sockets also get bad input before their metadata, where it closes the socket.
THROWAWAY_KINDS = (*MALFORMED_KINDS, "bad_json_first", "binary_first")
KEPT = "kept"
# What the service documents for each (README, "Bad input on the socket").
EXPECTED_OUTCOMES = {
    "bad_json": KEPT,
    "bad_base64": KEPT,
    "wrong_kind": KEPT,
    "oversized": "closed 1009",
    "bad_json_first": "closed 1007",
    "binary_first": "closed 1007",
}
SAMPLE_RATE = 16_000
CALLER, AGENT = "4:+14255550100", "8:acs:agent"
ENROLL_AUDIO_SECONDS = 30.0  # of audio per speaker; the service wants 20 s of net speech
FAULT_AT = 0.4  # share of a call's audio played before its in-call fault
DATABASE_FAULT_AT = 0.3
WEBHOOK_FAULT_AT = 0.5
THROWAWAY_AT = 0.75  # after the database outage, so that the outcomes are the sockets' own
PROBE_SECONDS = 0.5  # after a bad message: does the service close the socket?
RECONNECT_SECONDS = 1.0  # after a lost socket, as a platform would retry
RECONNECT_ATTEMPTS = 10
MAX_STREAM_FAILURES = 30  # event streams refused in a row before a watcher gives up
START_SECONDS = 120.0  # for the service to answer /readyz
SETTLE_SECONDS = 90.0  # for a call to end and its events to arrive, after its audio
WEBHOOK_DRAIN_SECONDS = 120.0  # the service's retries span about 31 s by default
STOP_SECONDS = 60.0
MAX_ERRORS_LISTED = 50
MAX_MESSAGE_BYTES = Settings.stream_max_message_bytes  # the service's default
CLEAN_EXITS = (0,)  # `biometrics serve` exits 0 once SIGTERM's graceful shutdown is done


class SoakError(Exception):
    """The soak cannot run (no speech, a service that does not start); nothing was judged."""


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    speech: Path  # LibriSpeech excerpts (test-other-dev used) or one subfolder per speaker
    calls: int = 20  # at once, in each wave
    minutes: float = 10.0
    speed: float = 1.0  # 1: real-time pacing
    speakers: int = 5
    call_seconds: float = 16.0  # of audio per participant: several verdicts (3, 5, 7, 9, 10 s)
    model: str = "bundled"
    postgres_url: str | None = None  # a server and a role with CREATEDB; SQLite if None
    pg_restart_command: str | None = None  # else the database fault switches off a proxy
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    database_outage_seconds: float = 5.0
    webhook_outage_seconds: float = 8.0
    workdir: Path | None = None  # default: a temporary folder, removed afterwards


# --- Speech ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Voice:
    speaker_id: str
    enrollment: tuple[Path, ...]
    call_audio: np.ndarray  # float32 at 16 kHz, ``call_seconds`` long, from other files


def speech_folder(path: Path) -> Path:
    """LibriSpeech's development readers when ``path`` holds them, else ``path`` itself."""
    dev = path / "test-other-dev"
    return dev if dev.is_dir() else path


def load_voices(path: Path, count: int, call_seconds: float) -> list[Voice]:
    """``count`` speakers (subfolders, in name order), each with its first recordings for
    enrollment and the following ones as call audio."""
    folder = speech_folder(path)
    if not folder.is_dir():
        raise SoakError(f"no speech at {path}: give --librispeech a folder of speakers")
    voices = []
    for speaker in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in speaker.iterdir() if f.suffix.lower() in (".flac", ".wav"))
        voice = _voice(f"soak-{speaker.name}", files, call_seconds)
        if voice is not None:
            voices.append(voice)
        if len(voices) == count:
            return voices
    raise SoakError(
        f"{folder} has {len(voices)} speaker(s) with {ENROLL_AUDIO_SECONDS:g} s of audio to "
        f"enroll and more for calls; the soak needs {count} (at least 2, for impostors)"
    )


def _voice(speaker_id: str, files: Sequence[Path], call_seconds: float) -> Voice | None:
    enrollment: list[Path] = []
    enrolled = 0.0
    rest: list[np.ndarray] = []
    for path in files:
        samples = simulator.load_samples(path, SAMPLE_RATE)
        if enrolled < ENROLL_AUDIO_SECONDS:
            enrollment.append(path)
            enrolled += len(samples) / SAMPLE_RATE
        else:
            rest.append(samples)
    if enrolled < ENROLL_AUDIO_SECONDS or not rest:
        return None
    audio = np.concatenate(rest)
    wanted = int(call_seconds * SAMPLE_RATE)
    audio = np.tile(audio, -(-wanted // len(audio)))[:wanted]  # repeated if short
    return Voice(speaker_id, tuple(enrollment), audio.astype(np.float32))


# --- The webhook receiver ----------------------------------------------------------------------


class WebhookSink:
    """A receiver on loopback that checks each signature, keeps the unique event ids (by
    call), and can be switched down: answering 503, or closing without an answer."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.mode: Literal["up", "refuse", "close"] = "up"
        self.posts = 0
        self.refused = 0
        self.bad_signatures = 0
        self.repeats = 0  # retries of an event already taken
        self.ids: dict[str, str] = {}  # event id -> call id
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = sink.take(body, self.headers.get(SIGNATURE_HEADER))
                if status is None:  # down, and closing: no answer at all
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def take(self, body: bytes, signature: str | None) -> int | None:
        """The status to answer a delivery with; None to close without one."""
        with self._lock:
            self.posts += 1
            if self.mode != "up":
                self.refused += 1
                return 503 if self.mode == "refuse" else None
            if not verify_signature(self.secret, body, signature):
                self.bad_signatures += 1
                return 401  # final for the service: the event counts as not delivered
            event = json.loads(body)
            event_id = str(event.get("id"))
            if event_id in self.ids:
                self.repeats += 1
            source = str(event.get("source", ""))
            self.ids[event_id] = urllib.parse.unquote(source.removeprefix("/v1/calls/"))
            return 204

    def received(self, calls: set[str] | None = None) -> set[str]:
        """Unique event ids taken (of ``calls`` only, if given)."""
        with self._lock:
            return {e for e, call in self.ids.items() if calls is None or call in calls}

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- The database fault --------------------------------------------------------------------------


class TcpProxy:
    """A TCP forwarder to ``target``; ``down`` cuts every connection and refuses new ones
    (accepts and closes them) until ``up``: the database unreachable, as on a network cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._down = False
        self._closed = False
        threading.Thread(target=self._accept_forever, daemon=True).start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def down(self) -> None:
        with self._lock:
            self._down = True
            connections, self._open = self._open, set()
        for connection in connections:
            _shut(connection)

    def up(self) -> None:
        with self._lock:
            self._down = False

    def close(self) -> None:
        self._closed = True
        self.down()
        _shut(self._listener)

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._down
            if refused:
                _shut(client)
                continue
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _shut(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with self._lock:
                self._open.discard(end)
            _shut(end)


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


# --- The service ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Service:
    """``biometrics serve`` as a subprocess, with its keys and its log."""

    url: str
    admin_key: str
    stream_key: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def socket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/acs"

    def client(self) -> Client:
        return Client(self.url, api_key=self.admin_key, retry=RetryPolicy(retries=5))

    def stop(self) -> int | None:
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


def start_service(folder: Path, database_url: str, model: str, webhook: WebhookSink) -> Service:
    key_file = folder / "voiceprints.key"
    key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    key_file.chmod(0o600)
    env = {
        **os.environ,
        "BIOMETRICS_DATABASE_URL": database_url,
        "BIOMETRICS_ENCRYPTION_KEY_FILE": str(key_file),
        "BIOMETRICS_MODEL_SOURCE": model,
        "BIOMETRICS_MODEL_CACHE_DIR": str(folder / "models"),
        "BIOMETRICS_WEBHOOK_URLS": webhook.url,
        "BIOMETRICS_WEBHOOK_SECRET": webhook.secret,
        # Impostor calls would lock the speakers out within minutes and the soak's requests
        # exceed a key's default rate: both are checked elsewhere, and would only hide here
        # whether verdicts and events get through.
        "BIOMETRICS_LOCKOUT_FAILURES": "0",
        "BIOMETRICS_RATE_LIMIT_PER_MINUTE": "0",
        "BIOMETRICS_LOG_FORMAT": "json",
        "BIOMETRICS_AUTH_ENABLED": "true",
        # The oversized messages are sized on this limit.
        "BIOMETRICS_STREAM_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
    }
    admin_key = _make_key(env, "admin")
    stream_key = _make_key(env, "stream")
    port = _free_port()
    log = folder / "service.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "biometrics", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", admin_key, stream_key, process, log)
    _wait_ready(service)
    return service


def _make_key(env: dict[str, str], role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "biometrics", "keys", "create", "--role", role, "--name", "soak"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SoakError(f"biometrics keys create --role {role} failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(service: Service) -> None:
    deadline = time.monotonic() + START_SECONDS
    with Client(service.url, retry=RetryPolicy(retries=0), timeout=5) as api:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                tail = service.log.read_text(errors="replace")[-2000:]
                raise SoakError(f"the service exited with {service.process.returncode}:\n{tail}")
            with contextlib.suppress(ClientError):
                if api.ready().ready:
                    return
            time.sleep(0.5)
    service.stop()
    raise SoakError(f"the service did not become ready within {START_SECONDS:g} s")


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new database on the server of ``admin_url``, dropped afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"biometrics_soak_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.SQLAlchemyError as error:
        admin.dispose()
        raise SoakError(f"cannot create a database with --postgres-url: {error}") from None
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError), admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def via_proxy(url: str, port: int) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


# --- What happened -----------------------------------------------------------------------------


class Tally:
    """Counts shared by every call of the run (the calls run on one event loop)."""

    def __init__(self) -> None:
        self.faults: collections.Counter[str] = collections.Counter()
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.errors: list[str] = []
        self.error_kinds: collections.Counter[str] = collections.Counter()

    def error(self, kind: str, text: str) -> None:
        self.error_kinds[kind] += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append(f"{kind}: {text}")

    def outcome(self, kind: str, outcome: str, where: str) -> None:
        self.outcomes[kind][outcome] += 1
        if outcome != EXPECTED_OUTCOMES[kind]:
            self.error(
                "unexpected_close", f"{kind} {where}: {outcome}, not {EXPECTED_OUTCOMES[kind]}"
            )

    def failure(self, where: str, error: BaseException) -> None:
        if isinstance(error, ApiError) and error.status >= 500:
            self.error("http_5xx", f"{where}: {error}")
        else:
            self.error("exception", f"{where}: {type(error).__name__}: {error}")


@dataclasses.dataclass
class CallResult:
    call_id: str
    genuine: bool
    sockets: int = 0
    frames_sent: int = 0
    frames_processed: int = 0
    dropped: int = 0
    events: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> type, over SSE
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> decision, SSE
    persisted: set[str] = dataclasses.field(default_factory=set)
    last_caller_decision: str | None = None  # the caller's last scored verdict


# --- Server-sent events ----------------------------------------------------------------------


class EventWatcher(threading.Thread):
    """Follows one call's server-sent events across its sockets: a stream ends after each
    call.ended, and is reopened after it (``Last-Event-ID``) unless that call.ended is the
    last one, the one whose call counts every socket the call was played on."""

    def __init__(self, client: Client, result: CallResult) -> None:
        super().__init__(name=f"events-{result.call_id}", daemon=True)
        self._client = client
        self._result = result
        self.ended = threading.Event()  # set with ``sockets`` once the service ended the call
        self.sockets = 0
        self.failures: list[ClientError] = []  # each stream the service could not open

    def run(self) -> None:
        last: str | None = None
        while len(self.failures) < MAX_STREAM_FAILURES:
            try:
                for event in self._client.events(self._result.call_id, last_event_id=last):
                    last = event.id or last
                    self._take(event.id or "", event.type, event.data)
                    if event.type == "call.ended" and self._last(event.data):
                        return
            except ClientError as error:  # e.g. a 500 while the database is away: again
                self.failures.append(error)
                time.sleep(RECONNECT_SECONDS)

    def _take(self, event_id: str, kind: str, data: Any) -> None:
        self._result.events[event_id] = kind
        if kind == "verdict.changed" and isinstance(data, dict):
            self._result.verdicts[str(data.get("verdict_id"))] = str(data.get("decision"))

    def _last(self, data: Any) -> bool:
        self.ended.wait()
        return isinstance(data, dict) and data.get("sockets") == self.sockets


# --- One call ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CallPlan:
    call_id: str
    caller: Voice  # whose voice the caller has
    claimed: Voice  # whom the caller claims to be
    agent: Voice
    fault: str | None  # "disconnect", a malformed kind, or None


class CallRun:
    """Plays one call over as many sockets as its faults take, and reads back what the
    service made of it."""

    def __init__(self, plan: CallPlan, service: Service, speed: float, tally: Tally) -> None:
        self.plan = plan
        self._service = service
        self._speed = speed
        self._tally = tally
        self.result = CallResult(plan.call_id, plan.caller is plan.claimed)
        self._headers = {
            "x-ms-call-connection-id": plan.call_id,
            "Authorization": f"Bearer {service.stream_key}",
        }
        self._api = service.client()
        self._watcher = EventWatcher(service.client(), self.result)

    async def play(self) -> None:
        """Claim the caller, follow the events, play the audio with its fault."""
        try:
            claimed = self.plan.claimed.speaker_id
            await asyncio.to_thread(self._api.claim, self.plan.call_id, CALLER, claimed)
            self._watcher.start()
            await self._play()
        except Exception as error:  # each failure is counted; none stops the soak
            self._tally.failure(f"call {self.plan.call_id}", error)

    def read_back(self) -> CallResult:
        """Blocking, once the wave's faults are over: what the service made of the call."""
        try:
            self._read_back()
        except Exception as error:
            self._tally.failure(f"reading back call {self.plan.call_id}", error)
        finally:
            self._watcher.ended.set()  # (if it never ended, let the watcher go)
            self._api.close()
        return self.result

    # --- the audio ---------------------------------------------------------------------------

    async def _play(self) -> None:
        streams = [
            simulator.Stream(CALLER, simulator.to_pcm(self.plan.caller.call_audio)),
            simulator.Stream(AGENT, simulator.to_pcm(self.plan.agent.call_audio)),
        ]
        start = datetime.now(UTC)
        frames = list(simulator.frames_for(streams, SAMPLE_RATE, start))
        cut = int(len(frames) * FAULT_AT) if self.plan.fault else len(frames)
        clock = asyncio.get_running_loop().time()
        websocket = await self._reopen()
        websocket = await self._send(websocket, frames[:cut], start, clock)
        if self.plan.fault == "disconnect":
            await self._abort(websocket)
        elif self.plan.fault is not None:
            await self._inject(websocket, self.plan.fault, frames[cut - 1])
        if websocket.close_code is not None:
            websocket = await self._reopen()
        websocket = await self._send(websocket, frames[cut:], start, clock)
        await websocket.close()
        if websocket.close_code != 1000:
            self._tally.error(
                "unexpected_close",
                f"call {self.plan.call_id} ended with {websocket.close_code} "
                f"{websocket.close_reason or ''}".rstrip(),
            )

    async def _reopen(self) -> ClientConnection:
        """A socket for the call (a reconnect resumes it), its metadata sent; a refusal is
        an error, and is tried again a moment later, as a platform would."""
        for attempt in range(RECONNECT_ATTEMPTS):
            if self.result.sockets or attempt:
                await asyncio.sleep(RECONNECT_SECONDS)
            try:
                websocket = await connect(
                    self._service.socket_url,
                    additional_headers=self._headers,
                    compression=None,
                    proxy=None,
                    open_timeout=simulator.CONNECT_TIMEOUT_SECONDS,
                )
                metadata = simulator.call_format(SAMPLE_RATE, self.plan.call_id)
                await websocket.send(encode_metadata(metadata))
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as error:
                self._tally.failure(f"connecting call {self.plan.call_id}", error)
                continue
            self.result.sockets += 1
            return websocket
        raise TimeoutError(f"no socket after {RECONNECT_ATTEMPTS} attempts")

    async def _send(
        self,
        websocket: ClientConnection,
        frames: Sequence[AudioFrame],
        start: datetime,
        clock: float,
    ) -> ClientConnection:
        """Each frame when its time comes (``speed`` times real time, counted from the
        call's first frame, so that a reconnect catches up). A socket the service closes
        meanwhile is an error; the call goes on over a new one, which is returned."""
        loop = asyncio.get_running_loop()
        for frame in frames:
            due = clock + (frame.timestamp - start).total_seconds() / self._speed
            await asyncio.sleep(max(due - loop.time(), 0.0))
            while True:
                try:
                    await websocket.send(encode_audio(frame))
                    break
                except ConnectionClosed:
                    closed = f"{websocket.close_code} {websocket.close_reason or ''}".rstrip()
                    where = f"call {self.plan.call_id} closed mid-call: {closed}"
                    self._tally.error("unexpected_close", where)
                    websocket = await self._reopen()
            self.result.frames_sent += 1
        return websocket

    async def _abort(self, websocket: ClientConnection) -> None:
        """Drop the connection without a close frame."""
        await _drained(websocket)
        websocket.transport.abort()
        await websocket.wait_closed()
        self._tally.faults["disconnect"] += 1

    async def _inject(self, websocket: ClientConnection, kind: str, frame: AudioFrame) -> None:
        await _drained(websocket)
        await websocket.send(bad_message(kind, frame))
        self._tally.faults["malformed"] += 1
        self._tally.outcome(kind, await probe(websocket), f"in call {self.plan.call_id}")

    # --- what the service made of it ---------------------------------------------------------

    def _read_back(self) -> None:
        api, watcher, call_id = self._api, self._watcher, self.plan.call_id
        deadline = time.monotonic() + SETTLE_SECONDS
        call = api.get_call(call_id)
        # Every socket is closed: ENDED now is the end of the last one.
        while call.status != "ENDED":
            if time.monotonic() > deadline:
                self._tally.error("exception", f"call {call_id} never ended: {call.status}")
                break
            time.sleep(0.2)
            call = api.get_call(call_id)
        watcher.sockets = call.sockets
        watcher.ended.set()
        watcher.join(max(deadline - time.monotonic(), 1.0))
        for failure in watcher.failures:
            self._tally.failure(f"events of {call_id}", failure)
        if watcher.is_alive():
            self._tally.error("exception", f"call {call_id}: no final call.ended over SSE")
        self.result.frames_processed = sum(p.frames for p in call.participants)
        self.result.dropped = int(call.counters.get("dropped", 0))
        for raw_id in (CALLER, AGENT):
            verdicts = api.verdicts(call_id, raw_id, limit=1000)
            self.result.persisted.update(v.verdict_id for v in verdicts if v.verdict_id)
            scored = [v.decision for v in verdicts if v.score is not None]
            if raw_id == CALLER and scored:
                self.result.last_caller_decision = scored[-1]


async def _drained(websocket: ClientConnection) -> None:
    """Wait until what was sent has left and the service had a moment to read it, before a
    fault that ends the socket: the frames counted as sent then all reached the service.
    (Without the wait, a socket closed 1009 for an oversized message was seen to lose the
    frames sent just before it, 4 of 51,200 in a 2-minute soak: the server closes the
    connection before the application has read everything that arrived.)"""
    while websocket.transport.get_write_buffer_size():
        await asyncio.sleep(0.01)
    await asyncio.sleep(PROBE_SECONDS)


def bad_message(kind: str, frame: AudioFrame) -> str | bytes:
    """A message the service must drop (or close the socket on), shaped after ``frame``."""
    if kind in ("bad_json", "bad_json_first"):
        return encode_audio(frame)[:-7]  # cut off mid-object
    if kind == "binary_first":
        return frame.pcm
    if kind == "wrong_kind":
        return json.dumps({"kind": "SoakNonsense", "soakNonsense": {"data": "x"}})
    message = json.loads(encode_audio(frame))
    if kind == "bad_base64":
        message["audioData"]["data"] = "@@ not base64 @@"
        return json.dumps(message)
    assert kind == "oversized"
    message["audioData"]["data"] = "A" * (MAX_MESSAGE_BYTES + 4)
    return json.dumps(message)


async def probe(websocket: ClientConnection) -> str:
    """``kept`` if the socket is still open a moment later, else ``closed <code>``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(websocket.wait_closed(), PROBE_SECONDS)
    return KEPT if websocket.close_code is None else f"closed {websocket.close_code}"


async def throwaway(service: Service, kind: str, tally: Tally) -> None:
    """A socket of its own that gets one bad message, before or after its metadata."""
    call_id = f"soak-junk-{uuid.uuid4().hex[:12]}"
    frame = AudioFrame(datetime.now(UTC), CALLER, bytes(640), True)
    headers = {"x-ms-call-connection-id": call_id, "Authorization": f"Bearer {service.stream_key}"}
    try:
        async with connect(service.socket_url, additional_headers=headers, proxy=None) as websocket:
            if not kind.endswith("_first"):
                await websocket.send(encode_metadata(simulator.call_format(SAMPLE_RATE, call_id)))
                await websocket.send(encode_audio(frame))
            await websocket.send(bad_message(kind, frame))
            tally.faults["malformed"] += 1
            tally.outcome(kind, await probe(websocket), "on a throwaway socket")
    except (OSError, ConnectionClosed, TimeoutError) as error:
        tally.failure(f"throwaway socket {kind}", error)


# --- Faults on a schedule ----------------------------------------------------------------------


class Faults:
    """The faults of one wave, each at its moment of the wave's audio."""

    def __init__(
        self,
        options: SoakOptions,
        service: Service,
        webhook: WebhookSink,
        proxy: TcpProxy | None,
        tally: Tally,
    ) -> None:
        self._options = options
        self._service = service
        self._webhook = webhook
        self._proxy = proxy
        self._tally = tally
        self._waves = 0

    def enabled(self, kind: str) -> bool:
        return kind in self._options.faults

    def in_call(self, index: int) -> str | None:
        """Half the calls are disconnected, the other half get a malformed message."""
        if index % 2 == 0 and self.enabled("disconnect"):
            return "disconnect"
        if index % 2 == 1 and self.enabled("malformed"):
            return MALFORMED_KINDS[(self._waves + index // 2) % len(MALFORMED_KINDS)]
        return None

    async def run(self, duration: float) -> None:
        """This wave's faults outside the calls: database, webhook receiver, throwaways."""
        self._waves += 1
        await asyncio.gather(
            self._later(duration * DATABASE_FAULT_AT, self._database),
            self._later(duration * WEBHOOK_FAULT_AT, self._webhook_down),
            self._later(duration * THROWAWAY_AT, self._throwaways),
        )

    async def _later(self, delay: float, fault: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        await fault()

    async def _database(self) -> None:
        if not self.enabled("database") or self._options.postgres_url is None:
            return
        self._tally.faults["database"] += 1
        command = self._options.pg_restart_command
        if command is not None:
            done = await asyncio.to_thread(
                subprocess.run, shlex.split(command), capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                self._tally.error("exception", f"{command!r} exited {done.returncode}")
            return
        assert self._proxy is not None
        self._proxy.down()
        await asyncio.sleep(self._options.database_outage_seconds)
        self._proxy.up()

    async def _webhook_down(self) -> None:
        if not self.enabled("webhook"):
            return
        self._tally.faults["webhook"] += 1
        self._webhook.mode = "refuse" if self._waves % 2 else "close"
        await asyncio.sleep(self._options.webhook_outage_seconds)
        self._webhook.mode = "up"

    async def _throwaways(self) -> None:
        if self.enabled("malformed"):
            await asyncio.gather(
                *(throwaway(self._service, k, self._tally) for k in THROWAWAY_KINDS)
            )


# --- The report ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    calls: int = 0
    waves: int = 0
    sockets: int = 0
    frames_sent: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    verdicts_produced: int = 0
    verdicts_persisted: int = 0
    decisions: dict[str, int] = dataclasses.field(default_factory=dict)
    genuine_accepted: str = ""
    impostor_rejected: str = ""
    events_produced: int = 0
    webhooks_delivered: int = 0  # unique ids of the soak's calls' events
    webhooks_delivered_throwaway: int = 0  # of the calls the throwaway sockets made
    webhook_posts: int = 0
    webhook_refused: int = 0
    webhook_bad_signatures: int = 0
    dead_letters: int | None = None  # None: the service has no dead-letter route
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    malformed_outcomes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    error_samples: list[str] = dataclasses.field(default_factory=list)
    server_exit_code: int | None = None
    lost: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(self.lost.values()) and not any(self.errors.values())

    def as_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "ok": self.ok}, indent=2)

    def table(self) -> str:
        dead = "n/a" if self.dead_letters is None else str(self.dead_letters)
        rows = [
            ("calls", f"{self.calls} in {self.waves} waves, {self.seconds:.0f} s"),
            ("sockets", str(self.sockets)),
            ("frames sent", str(self.frames_sent)),
            (
                "frames processed",
                f"{self.frames_processed} (dropped as malformed: {self.frames_dropped})",
            ),
            ("verdicts produced (SSE)", str(self.verdicts_produced)),
            ("verdicts persisted", str(self.verdicts_persisted)),
            ("decisions", _pairs(self.decisions)),
            ("genuine callers accepted", self.genuine_accepted),
            ("impostors rejected", self.impostor_rejected),
            ("events produced", str(self.events_produced)),
            (
                "webhooks delivered",
                f"{self.webhooks_delivered} unique ids (+{self.webhooks_delivered_throwaway} "
                f"of throwaway sockets; {self.webhook_posts} posts, {self.webhook_refused} "
                f"refused while down, {self.webhook_bad_signatures} bad signatures)",
            ),
            ("webhook dead letters", dead),
            ("faults injected", _pairs(self.faults)),
            *(
                (f"  {kind}", f"{_pairs(outcomes)} (expected: {EXPECTED_OUTCOMES[kind]})")
                for kind, outcomes in sorted(self.malformed_outcomes.items())
            ),
            ("errors", _pairs(self.errors) or "none"),
            ("server exit code (SIGTERM)", str(self.server_exit_code)),
            ("lost", _pairs(self.lost)),
            ("result", "nothing lost" if self.ok else "FAILED"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"  {sample}" for sample in self.error_samples]
        return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))


def account(
    results: Sequence[CallResult],
    tally: Tally,
    webhook: WebhookSink,
    dead_letters: set[str] | None,
) -> Report:
    """Where everything went; what was produced and did not arrive is lost."""
    produced = {event_id for r in results for event_id in r.events}
    # Events of the soak's calls that reached the receiver but not the SSE stream count
    # as produced too (and as missed by SSE).
    calls = {r.call_id for r in results}
    delivered = webhook.received(calls)
    produced |= delivered
    verdicts = {v for r in results for v in r.verdicts}
    persisted = {v for r in results for v in r.persisted}
    decisions = collections.Counter(d for r in results for d in r.verdicts.values())
    genuine = [r for r in results if r.genuine]
    impostors = [r for r in results if not r.genuine]
    return Report(
        calls=len(results),
        sockets=sum(r.sockets for r in results),
        frames_sent=sum(r.frames_sent for r in results),
        frames_processed=sum(r.frames_processed for r in results),
        frames_dropped=sum(r.dropped for r in results),
        verdicts_produced=len(verdicts),
        verdicts_persisted=len(persisted),
        decisions=dict(decisions),
        genuine_accepted=_share(genuine, "ACCEPT"),
        impostor_rejected=_share(impostors, "REJECT"),
        events_produced=len(produced),
        webhooks_delivered=len(delivered),
        webhooks_delivered_throwaway=len(webhook.received()) - len(delivered),
        webhook_posts=webhook.posts,
        webhook_refused=webhook.refused,
        webhook_bad_signatures=webhook.bad_signatures,
        dead_letters=None if dead_letters is None else len(dead_letters),
        faults=dict(tally.faults),
        malformed_outcomes={k: dict(v) for k, v in tally.outcomes.items()},
        errors=dict(tally.error_kinds),
        error_samples=list(tally.errors),
        lost={
            "verdicts not persisted": len(verdicts - persisted),
            "events not delivered nor dead-lettered": len(
                produced - delivered - (dead_letters or set())
            ),
            "events missed by SSE": len(produced - {e for r in results for e in r.events}),
            "frames not processed": sum(r.frames_sent - r.frames_processed for r in results),
        },
    )


def _share(results: Sequence[CallResult], decision: str) -> str:
    judged = [r for r in results if r.last_caller_decision is not None]
    hits = sum(r.last_caller_decision == decision for r in judged)
    return f"{hits}/{len(judged)}"


def read_dead_letters(service: Service) -> set[str] | None:
    """Event ids the service gave up delivering; None where it has no such route."""
    response = httpx.get(
        service.url + "/v1/webhooks/dead-letters",
        headers={"Authorization": f"Bearer {service.admin_key}"},
        timeout=30,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body = response.json()
    rows = (
        next((v for v in body.values() if isinstance(v, list)), [])
        if isinstance(body, dict)
        else body
    )
    return {str(row.get("event_id") or row.get("id")) for row in rows if isinstance(row, dict)}


# --- The run -------------------------------------------------------------------------------------


def run(options: SoakOptions, progress: Callable[[str], None] = print) -> Report:
    """The whole soak; raise SoakError if it cannot start."""
    if options.calls < 1 or options.speed <= 0 or options.minutes <= 0:
        raise SoakError("calls, minutes and speed must be positive")
    voices = load_voices(options.speech, max(options.speakers, 2), options.call_seconds)
    with contextlib.ExitStack() as stack:
        folder = options.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        webhook = stack.enter_context(WebhookSink(secrets.token_hex(16)))
        proxy = None
        if options.postgres_url is None:
            database_url = f"sqlite:///{folder / 'soak.db'}"
        else:
            database_url = stack.enter_context(fresh_postgres(options.postgres_url))
            if options.pg_restart_command is None:
                target = sa.make_url(database_url)
                proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
                stack.callback(proxy.close)
                database_url = via_proxy(database_url, proxy.port)
        service = start_service(folder, database_url, options.model, webhook)
        progress(
            f"service up at {service.url} (log: {service.log}); enrolling {len(voices)} speakers"
        )
        try:
            enroll(service, voices)
            report = asyncio.run(_soak(options, service, webhook, proxy, voices, progress))
        finally:
            exit_code = service.stop()
        report.server_exit_code = exit_code
        if exit_code not in CLEAN_EXITS:
            report.errors["server_exit"] = report.errors.get("server_exit", 0) + 1
    return report


def enroll(service: Service, voices: Sequence[Voice]) -> None:
    speakers = {
        voice.speaker_id: [bulk_enrollment.Recording(path, path.name) for path in voice.enrollment]
        for voice in voices
    }
    with service.client() as api, open(os.devnull, "w") as quiet:
        outcomes = bulk_enrollment.run(
            api, speakers, overwrite=True, progress=quiet, quiet=True, out=quiet
        )
    failed = [o.speaker_id for o in outcomes if o.status != "ENROLLED"]
    if failed:
        raise SoakError(f"could not enroll {', '.join(failed)} from their recordings")


async def _soak(
    options: SoakOptions,
    service: Service,
    webhook: WebhookSink,
    proxy: TcpProxy | None,
    voices: Sequence[Voice],
    progress: Callable[[str], None],
) -> Report:
    tally = Tally()
    faults = Faults(options, service, webhook, proxy, tally)
    began = time.monotonic()
    results: list[CallResult] = []
    waves = 0
    wave_seconds = options.call_seconds / options.speed
    while waves == 0 or time.monotonic() - began < options.minutes * 60:
        plans = [
            plan_call(voices, len(results) + i, faults.in_call(i)) for i in range(options.calls)
        ]
        runs = [CallRun(plan, service, options.speed, tally) for plan in plans]
        await asyncio.gather(*(r.play() for r in runs), faults.run(wave_seconds))
        results.extend(await asyncio.gather(*(asyncio.to_thread(r.read_back) for r in runs)))
        waves += 1
        progress(
            f"wave {waves}: {len(results)} calls, {time.monotonic() - began:.0f} s, "
            f"errors {sum(tally.error_kinds.values())}"
        )
    expected = {e for r in results for e in r.events}
    await asyncio.to_thread(_drain_webhooks, webhook, expected)
    dead = await asyncio.to_thread(read_dead_letters, service)
    report = account(results, tally, webhook, dead)
    report.waves = waves
    report.seconds = time.monotonic() - began
    return report


def plan_call(voices: Sequence[Voice], number: int, fault: str | None) -> CallPlan:
    """Call ``number``: genuine or an impostor, in turn across the in-call faults (which
    alternate with the call's place in its wave); the agent another voice."""
    claimed = voices[number % len(voices)]
    caller = claimed if number % 4 in (0, 3) else voices[(number + 1) % len(voices)]
    agent = voices[(number + 2) % len(voices)] if len(voices) > 2 else caller
    call_id = f"soak-{number:05d}-{uuid.uuid4().hex[:8]}"
    return CallPlan(call_id, caller, claimed, agent, fault)


def _drain_webhooks(webhook: WebhookSink, expected: set[str]) -> None:
    deadline = time.monotonic() + WEBHOOK_DRAIN_SECONDS
    while time.monotonic() < deadline and not expected <= webhook.received():
        time.sleep(0.5)
