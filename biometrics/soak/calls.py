"""One call of the soak: played over as many sockets as its fault takes, its server-sent
events followed throughout, and read back over REST once it is over."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from biometrics import simulator
from biometrics.client import Client, ClientError
from biometrics.soak.malformed import bad_message, drained, probe
from biometrics.soak.report import CallResult, Tally
from biometrics.soak.service import REPLICA_HEADER, Endpoint
from biometrics.soak.speech import SAMPLE_RATE, Voice
from biometrics.streaming.protocol import AudioFrame, encode_audio, encode_metadata

CALLER, AGENT = "4:+14255550100", "8:acs:agent"
FAULT_AT = 0.4  # share of a call's audio played before its in-call fault
RECONNECT_SECONDS = 1.0  # after a lost socket, as a platform would retry
RECONNECT_ATTEMPTS = 10
MAX_STREAM_FAILURES = 30  # event streams refused in a row before a watcher gives up
SETTLE_SECONDS = 90.0  # for a call to end and its events to arrive, after its audio


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
        arrived = time.time()
        self._result.events[event_id] = kind
        if kind == "verdict.changed" and isinstance(data, dict):
            self._result.verdicts[str(data.get("verdict_id"))] = str(data.get("decision"))
            self._result.verdict_arrivals.append((arrived, data))

    def _last(self, data: Any) -> bool:
        self.ended.wait()
        return isinstance(data, dict) and data.get("sockets") == self.sockets


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

    def __init__(self, plan: CallPlan, service: Endpoint, speed: float, tally: Tally) -> None:
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
        self.result.audio_start = start
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
            answer = websocket.response
            self.result.replicas.append(
                None if answer is None else answer.headers.get(REPLICA_HEADER)
            )
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
                    self._sent(frame, loop.time() - due)
                    break
                except ConnectionClosed:
                    closed = f"{websocket.close_code} {websocket.close_reason or ''}".rstrip()
                    where = f"call {self.plan.call_id} closed mid-call: {closed}"
                    self._tally.error("unexpected_close", where)
                    websocket = await self._reopen()
            self.result.frames_sent += 1
        return websocket

    def _sent(self, frame: AudioFrame, late: float) -> None:
        """Note when a frame went out: how late against its schedule, and (the caller's)
        the wall-clock moment, which a verdict's ``last_audio_at`` leads back to."""
        self.result.send_lag.append(late)
        if frame.participant_raw_id == CALLER:
            self.result.caller_sent_at.append(time.time())

    async def _abort(self, websocket: ClientConnection) -> None:
        """Drop the connection without a close frame."""
        await drained(websocket)
        websocket.transport.abort()
        await websocket.wait_closed()
        self._tally.faults["disconnect"] += 1

    async def _inject(self, websocket: ClientConnection, kind: str, frame: AudioFrame) -> None:
        await drained(websocket)
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
        caller = call.participant(CALLER)
        self.result.caller_speech_seconds = 0.0 if caller is None else caller.net_speech_seconds
        self.result.dropped = int(call.counters.get("dropped", 0))
        for raw_id in (CALLER, AGENT):
            verdicts = api.verdicts(call_id, raw_id, limit=1000)
            self.result.persisted.update(v.verdict_id for v in verdicts if v.verdict_id)
            scored = [v.decision for v in verdicts if v.score is not None]
            if raw_id == CALLER and scored:
                self.result.last_caller_decision = scored[-1]
