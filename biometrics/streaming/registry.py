"""Every call this process knows: found by id, created by a claim or a socket, resumed by a
reconnect, and forgotten once it has ended and nobody has streamed it for a while.

A call stays in memory while a socket streams it, and for ``stream_retention_seconds``
after its last socket closed, so that a reconnect continues it with its speech buffers.
Past that (or when memory is needed for new calls) it is evicted; its summary, claims and
verdict history stay in the database, and a later socket or claim for the same id resumes
it from there, with empty speech buffers.

Several replicas share calls through :mod:`biometrics.cluster`: a replica holds each call it
has in memory under a lease. A claim for a call held elsewhere is sent to its holder; a
socket for it asks the holder to let the idle call go, or waits for a dead holder's lease to
expire (at most a lease), then takes the call over from the database. In one process
(:data:`~biometrics.cluster.ownership.SOLE_REPLICA`) every call is held here.

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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from biometrics import memory
from biometrics.clock import utcnow
from biometrics.cluster.ownership import SOLE_REPLICA, CallOwnership
from biometrics.errors import CallElsewhere, SharedStateUnavailable, TooManyCalls
from biometrics.events import Broker
from biometrics.events.publisher import CallPublisher
from biometrics.snapshots import CallSummary, SpeakerClaim, participant_view
from biometrics.statuses import CallStatus
from biometrics.store.calls import CallStore
from biometrics.store.database import is_unavailable
from biometrics.streaming.call import CallSession
from biometrics.streaming.participant import CallServices
from biometrics.streaming.protocol import AudioFormat

logger = logging.getLogger(__name__)

MAX_SWEEP_SECONDS = 30.0
MIN_SWEEP_SECONDS = 0.5
STOP_SECONDS = 5.0  # at shutdown, how long calls may take to end
HOLDER_RETRY_SECONDS = 0.2  # asking again for a call held elsewhere
# How long a claim's answer waits for its snapshot to reach the database, at most: well
# under the second another replica waits for a claim it forwarded (REQUEST_SECONDS).
STORED_SECONDS = 0.5

Answer = TypeVar("Answer")  # what the replica holding a call answered a request with


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
        ownership: CallOwnership = SOLE_REPLICA,
    ) -> None:
        self._limits = limits
        self._ownership = ownership
        ownership.serve(self)
        self._letting_go: set[asyncio.Task[None]] = set()
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
        if self._letting_go:
            await asyncio.wait(set(self._letting_go), timeout=STOP_SECONDS)
        return Finalised(self._finalised_calls, self._final_verdicts)

    # --- finding and creating ----------------------------------------------------------------

    def find(self, call_id: str) -> CallSession | None:
        return self._calls.get(call_id)

    async def obtain(self, call_id: str) -> CallSession:
        """The call in memory; else resumed from the database; else a new PENDING one.
        CallElsewhere if another replica holds it."""
        held = await self._hold(call_id)
        if isinstance(held, str):
            raise CallElsewhere(
                f"call {call_id!r} streams on another replica ({held}); send this request "
                "through the balancer to the replica that holds its socket"
            )
        return held

    async def _hold(self, call_id: str) -> CallSession | str:
        """The call, held by this replica from now on; else the id of the one holding it."""
        call = self._calls.get(call_id)
        if call is not None:
            return call
        lock = self._creating.setdefault(call_id, asyncio.Lock())
        async with lock:
            call = self._calls.get(call_id)
            if call is not None:
                return call
            holder = await self._acquire(call_id)
            if holder is not None:
                return holder
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

    async def _acquire(self, call_id: str) -> str | None:
        try:
            return await self._ownership.acquire(call_id)
        except (RedisError, OSError) as error:
            logger.error(
                "Redis unreachable: the call is held here without a lease; another replica "
                "may hold it too",
                extra={"call_id": call_id, "error": str(error)},
            )
            return None

    async def _until_held(
        self, call_id: str, ask: Callable[[str], Awaitable[Answer | None]]
    ) -> CallSession | Answer:
        """Hold the call, or have ``ask(holder)`` answered by its holder (its answer, when
        not None); a dead holder's lease expires meanwhile. CallElsewhere past a lease."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ownership.lease_seconds + 1.0
        while True:
            held = await self._hold(call_id)
            if isinstance(held, CallSession):
                return held
            try:
                answer = await ask(held)
            except (RedisError, OSError) as error:
                raise SharedStateUnavailable(
                    f"call {call_id!r} is held by replica {held}, reached through Redis", error
                ) from error
            if answer is not None:
                return answer
            if loop.time() > deadline:
                raise CallElsewhere(
                    f"call {call_id!r} is held by replica {held}, which neither answers nor "
                    "lets it go; try again shortly",
                    retry_after=self._ownership.lease_seconds,
                )
            await asyncio.sleep(HOLDER_RETRY_SECONDS)

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

    async def held(self, call_id: str) -> bool:
        """Whether a replica has the call in memory now: this one, or another by its lease
        (which it takes before it creates or resumes the call, so that a call claimed
        elsewhere a moment ago is known here before its snapshot is stored). Redis errors
        propagate."""
        return call_id in self._calls or await self._ownership.holder(call_id) is not None

    # --- claims and sockets ------------------------------------------------------------------

    async def claim(self, call_id: str, raw_id: str, claim: SpeakerClaim) -> dict[str, Any]:
        """Claim a participant wherever its call is held; the participant as the API shows
        it."""

        async def forward(holder: str) -> dict[str, Any] | None:
            return await self._ownership.forward_claim(holder, call_id, raw_id, claim)

        held = await self._until_held(call_id, forward)
        if not isinstance(held, CallSession):
            logger.info(
                "participant claimed on the replica holding its call",
                extra={"call_id": call_id, "participant": raw_id, "speaker_id": claim.speaker_id},
            )
            return dict(held)
        participant = self._claim_here(held, raw_id, claim)
        await self._stored(call_id)
        return participant

    def _claim_here(self, call: CallSession, raw_id: str, claim: SpeakerClaim) -> dict[str, Any]:
        participant = call.claim(raw_id, claim)
        logger.info(
            "participant claimed",
            extra={"call_id": call.call_id, "participant": raw_id, "speaker_id": claim.speaker_id},
        )
        return participant_view(call.summary(), participant.summary())

    async def claim_held(
        self, call_id: str, raw_id: str, claim: SpeakerClaim
    ) -> dict[str, Any] | None:
        """Another replica's claim for a call held here; None if it is not here."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        participant = self._claim_here(call, raw_id, claim)
        await self._stored(call_id)
        return participant

    async def _stored(self, call_id: str) -> None:
        """With other replicas, wait until the call's latest snapshot is in the database
        before a claim is answered: they read the call from there, so that a read on any
        replica right after the answer shows the claim. A database slower than
        ``STORED_SECONDS`` is not waited for (the write goes on; the claim is applied
        here), so that a forwarded claim is still answered in time. One process reads the
        call from its memory and waits for nothing."""
        if not self._ownership.shared:
            return
        try:
            await asyncio.wait_for(self._store.written(), STORED_SECONDS)
        except TimeoutError:
            logger.warning(
                "the database is slow: a claim is answered before its call is stored, so "
                "other replicas may not show it for a moment",
                extra={"call_id": call_id, "waited_seconds": STORED_SECONDS},
            )

    async def hand_over(self, call_id: str) -> bool:
        """Another replica has a socket for the call: let it go if it is idle here."""
        call = self._calls.get(call_id)
        if call is not None and not (call.idle and call.status is not CallStatus.ONGOING):
            return False
        if call is not None:
            self._evict(call)
        await self._let_go(call_id)
        logger.info("call handed over to another replica", extra={"call_id": call_id})
        return True

    def lease_lost(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.idle:
            call.close()
            del self._calls[call_id]
        else:
            logger.error(
                "a call streaming here lost its lease to another replica (Redis was "
                "unreachable for a lease): both may judge it until this socket closes",
                extra={"call_id": call_id},
            )

    async def connect(
        self,
        call_id: str,
        correlation_id: str | None,
        audio_format: AudioFormat,
        counters: dict[str, int],
    ) -> CallSession:
        """The socket's call, taken over from the replica that held it if another did."""

        async def take_over(holder: str) -> None:
            if await self._ownership.ask_release(holder, call_id):
                logger.info(
                    "call taken over from another replica",
                    extra={"call_id": call_id, "holder": holder},
                )
            return None  # either way: hold it now, or wait for the lease

        call = await self._until_held(call_id, take_over)
        assert isinstance(call, CallSession)
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
        logger.info("call left memory", extra={"call_id": call.call_id, "status": call.status})
        if not self._ownership.shared:
            self._broker.forget(call.call_id)
        else:  # its SSE subscribers here follow it to the replica that takes it next
            task = asyncio.get_running_loop().create_task(self._let_go(call.call_id))
            self._letting_go.add(task)
            task.add_done_callback(self._letting_go.discard)

    async def _let_go(self, call_id: str) -> None:
        """Release the call's lease once its last snapshot is stored, so that the replica
        taking it next reads it whole; unless it came back into memory meanwhile."""
        await self._store.flush()
        async with self._creating.setdefault(call_id, asyncio.Lock()):
            if call_id not in self._calls:
                await self._ownership.release(call_id)

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
