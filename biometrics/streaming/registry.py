"""Every call this process knows: found by id, created by a claim or a socket, resumed by a
reconnect, and forgotten once it has ended and nobody has streamed it for a while.

A call stays in memory while a socket streams it, and for ``stream_retention_seconds``
after its last socket closed, so that a reconnect continues it with its speech buffers.
Past that (or when memory is needed for new calls) it is evicted; its summary, claims and
verdict history stay in the database, and a later socket or claim for the same id resumes
it from there, with empty speech buffers. Live calls are held per process: run one
process, or route every socket and request of a call to the same one.

While the database is unreachable a call that is not in memory cannot be read: it starts
as a new call (logged), so that its audio is still judged; its stored summary is
overwritten by this one's when the database is back.

When the service stops (:meth:`CallRegistry.drain`, before the server closes the
sockets) every call that ends gives each claimed participant with enough speech a final
verdict on all of it (:meth:`ParticipantStream.wrap_up`); :meth:`CallRegistry.stop` then
waits for the calls to end and their summaries to be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import weakref

from biometrics import memory
from biometrics.clock import utcnow
from biometrics.errors import TooManyCalls
from biometrics.events import Broker
from biometrics.events.publisher import CallPublisher
from biometrics.snapshots import CallSummary, SpeakerClaim
from biometrics.statuses import CallStatus
from biometrics.store.calls import CallStore
from biometrics.store.database import is_unavailable
from biometrics.streaming.call import CallSession
from biometrics.streaming.participant import CallServices, ParticipantStream
from biometrics.streaming.protocol import AudioFormat

logger = logging.getLogger(__name__)

MAX_SWEEP_SECONDS = 30.0
MIN_SWEEP_SECONDS = 0.5
STOP_SECONDS = 5.0  # at shutdown, how long calls may take to end


@dataclasses.dataclass(frozen=True)
class Finalised:
    """What the calls' end at shutdown left: calls ended, final verdicts made."""

    calls: int
    final_verdicts: int


@dataclasses.dataclass(frozen=True)
class CallLimits:
    max_calls: int  # held in memory at once: pending, live and recently ended
    max_participants: int  # per call
    retention_seconds: float  # an ended call stays in memory (a reconnect keeps its speech)
    # After a sweep evicted calls, return the heap's freed pages to the system (glibc):
    # else the resident size keeps the high-water mark of every burst of calls.
    trim_memory: bool = False


class CallRegistry:
    def __init__(
        self,
        limits: CallLimits,
        services: CallServices,
        store: CallStore,
        publisher: CallPublisher,
        broker: Broker,
    ) -> None:
        self._limits = limits
        self._services = services
        self._store = store
        self._publisher = publisher
        self._broker = broker
        self._calls: dict[str, CallSession] = {}
        self._creating: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._sweeper: asyncio.Task[None] | None = None
        self._endings: set[asyncio.Task[None]] = set()
        self._draining = False
        self._finalised_calls = 0
        self._final_verdicts = 0

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def drain(self) -> None:
        """The service is stopping: calls that end from now on end for good, each claimed
        participant with enough speech getting a final verdict on all of it."""
        self._draining = True

    async def stop(self) -> Finalised:
        """Wait for the calls ending (at most ``STOP_SECONDS``), forget every call and
        write their summaries; what the shutdown finalised."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._endings:
            await asyncio.wait(set(self._endings), timeout=STOP_SECONDS)
        for call in self._calls.values():
            call.close()
        self._calls.clear()
        await self._store.flush()
        return Finalised(self._finalised_calls, self._final_verdicts)

    # --- finding and creating ----------------------------------------------------------------

    def find(self, call_id: str) -> CallSession | None:
        return self._calls.get(call_id)

    async def obtain(self, call_id: str) -> CallSession:
        """The call in memory; else resumed from the database; else a new PENDING one."""
        call = self._calls.get(call_id)
        if call is not None:
            return call
        lock = self._creating.setdefault(call_id, asyncio.Lock())
        async with lock:
            call = self._calls.get(call_id)
            if call is not None:
                return call
            stored = await self._load(call_id)
            recordings = self._services.recordings
            recording = None if recordings is None else await recordings.setting(call_id)
            self._make_room()
            call = CallSession(
                call_id,
                services=self._services,
                save=self._store.save,
                publish=self._publisher.publish,
                max_participants=self._limits.max_participants,
            )
            if stored is not None:
                call.restore(stored)
                logger.info("call resumed from the database", extra={"call_id": call_id})
            call.recording = recording
            self._calls[call_id] = call
            return call

    async def _load(self, call_id: str) -> CallSummary | None:
        try:
            return await self._store.load(call_id)
        except Exception as error:
            if not is_unavailable(error):
                raise
            logger.warning(
                "database unreachable: the call is taken as new",
                extra={"call_id": call_id, "error": str(error)},
            )
            return None

    def census(self) -> tuple[int, int]:
        """Calls a socket streams now, and their participants heard so far (/metrics)."""
        live = [call for call in self._calls.values() if call.status is CallStatus.ONGOING]
        heard = sum(p.joined_at is not None for call in live for p in call.participants.values())
        return len(live), heard

    async def summary(self, call_id: str) -> CallSummary | None:
        """The call as it is now: live from memory, else as last stored."""
        call = self._calls.get(call_id)
        if call is not None:
            return call.summary()
        return await self._store.load(call_id)

    # --- claims and sockets ------------------------------------------------------------------

    async def claim(self, call_id: str, raw_id: str, claim: SpeakerClaim) -> ParticipantStream:
        call = await self.obtain(call_id)
        participant = call.claim(raw_id, claim)
        logger.info(
            "participant claimed",
            extra={"call_id": call_id, "participant": raw_id, "speaker_id": claim.speaker_id},
        )
        return participant

    async def connect(
        self,
        call_id: str,
        correlation_id: str | None,
        audio_format: AudioFormat,
        counters: dict[str, int],
    ) -> CallSession:
        call = await self.obtain(call_id)
        call.connect(correlation_id, audio_format, counters)
        return call

    async def disconnect(self, call: CallSession, counters: dict[str, int]) -> None:
        """A socket closed. Ending the call (its last verdicts, call.ended) runs as a task of
        its own: a socket handler cancelled meanwhile (server shutdown, a test client)
        does not leave the call half-ended."""
        task = asyncio.get_running_loop().create_task(self._disconnect(call, counters))
        self._endings.add(task)
        task.add_done_callback(self._endings.discard)
        await asyncio.shield(task)

    async def _disconnect(self, call: CallSession, counters: dict[str, int]) -> None:
        draining = self._draining
        if not await call.disconnect(counters, final=draining):
            call.save()
        elif draining:
            self._finalised_calls += 1
            self._final_verdicts += call.final_verdicts

    # --- forgetting --------------------------------------------------------------------------

    def _make_room(self) -> None:
        if len(self._calls) < self._limits.max_calls:
            return
        self.sweep()
        if len(self._calls) < self._limits.max_calls:
            return
        idle = [
            call
            for call in self._calls.values()
            if call.idle and call.status is not CallStatus.ONGOING
        ]
        if not idle:
            raise TooManyCalls(
                f"{len(self._calls)} calls are live or pending in this process "
                "(BIOMETRICS_STREAM_MAX_CALLS); try again later"
            )
        oldest = min(idle, key=lambda call: call.active_at)
        self._evict(oldest)  # lossless but for its speech buffers: it is in the database

    def sweep(self) -> int:
        """Evict calls idle for longer than the retention: ended, or pending unstreamed;
        how many were evicted."""
        now = utcnow()
        retention = self._limits.retention_seconds
        evicted = 0
        for call in list(self._calls.values()):
            if (
                call.idle
                and call.status is not CallStatus.ONGOING
                and (now - call.active_at).total_seconds() >= retention
            ):
                self._evict(call)
                evicted += 1
        return evicted

    def _evict(self, call: CallSession) -> None:
        call.close()
        del self._calls[call.call_id]
        self._broker.forget(call.call_id)
        logger.info("call left memory", extra={"call_id": call.call_id, "status": call.status})

    async def _sweep_forever(self) -> None:
        interval = self._limits.retention_seconds / 2
        interval = min(max(interval, MIN_SWEEP_SECONDS), MAX_SWEEP_SECONDS)
        while True:
            await asyncio.sleep(interval)
            try:
                if self.sweep() and self._limits.trim_memory:
                    await asyncio.to_thread(memory.trim)
            except Exception:
                logger.exception("sweeping ended calls failed")
