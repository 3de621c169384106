"""Which replica holds each live call, and the requests other replicas send it.

A replica holds a call while the call is in its memory (streaming, pending a socket with
claims, or recently ended): the call's key in Redis names the replica, with a lease of
``lease_seconds`` that a task here renews three times a lease for every held call in one
round trip. Three renewals per lease let one be late (a busy event loop) without losing the
call; a replica that dies stops renewing, so within one lease its calls are free for another
replica to take over from the database (claims, verdict history); only the speech it had
buffered is lost. Five seconds by default: an ACS reconnect to another replica waits at most
that long for the call, and renewing costs a fraction of a Redis round trip per call.

A replica asked about a call another holds sends the holder a request on its pub/sub
channel: ``claim`` (apply a claim to the call it streams, answered with the participant) or
``release`` (let an idle call go, so that a socket that landed elsewhere can take it). A
request published to no listener means the holder is gone.

:data:`SOLE_REPLICA` is the embedded default: one process holds every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from biometrics.cluster import keys
from biometrics.cluster.bus import Bus
from biometrics.errors import BiometricsError
from biometrics.snapshots import SpeakerClaim

logger = logging.getLogger(__name__)

REQUEST_SECONDS = 1.0  # a live holder answers in milliseconds; past this it is taken as gone

# Take the lease if it is free or already ours; else name its holder.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
return holder
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Renew every lease still ours; the indexes (from 1) of those that are not any more.
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""


class HolderRefused(BiometricsError):
    """The replica holding the call refused the request, with its own error."""

    def __init__(self, code: str, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.status_code = status_code


class HeldCalls(Protocol):
    """What the replica's call registry answers for the calls it holds."""

    async def claim_held(
        self, call_id: str, raw_id: str, claim: SpeakerClaim
    ) -> dict[str, Any] | None:
        """The participant after the claim (its JSON), or None if the call is not here."""

    async def hand_over(self, call_id: str) -> bool:
        """Let the call go if no socket streams it and nothing runs for it."""

    def lease_lost(self, call_id: str) -> None:
        """Another replica took the call (this one was unreachable for a lease)."""


class CallOwnership(Protocol):
    shared: bool  # other replicas may hold calls
    lease_seconds: float

    async def acquire(self, call_id: str) -> str | None:
        """Hold the call: None when this replica holds it now, else the holder's id."""

    async def release(self, call_id: str) -> None: ...

    async def holder(self, call_id: str) -> str | None:
        """The replica whose lease names the call now, if any."""

    async def forward_claim(
        self, holder: str, call_id: str, raw_id: str, claim: SpeakerClaim
    ) -> dict[str, Any] | None:
        """The claim applied by ``holder``; None if it did not answer or holds no more."""

    async def ask_release(self, holder: str, call_id: str) -> bool: ...

    def serve(self, calls: HeldCalls) -> None: ...


class SoleReplica:
    """One process: it holds every call, and there is nobody to ask."""

    shared = False
    lease_seconds = 0.0

    async def acquire(self, call_id: str) -> str | None:
        return None

    async def release(self, call_id: str) -> None:
        return None

    async def holder(self, call_id: str) -> str | None:
        return None  # no leases: the registry's memory is the whole answer

    async def forward_claim(
        self, holder: str, call_id: str, raw_id: str, claim: SpeakerClaim
    ) -> dict[str, Any] | None:
        return None

    async def ask_release(self, holder: str, call_id: str) -> bool:
        return False

    def serve(self, calls: HeldCalls) -> None:
        return None


SOLE_REPLICA = SoleReplica()


class RedisOwnership:
    def __init__(self, redis: Redis, bus: Bus, lease_seconds: float) -> None:
        self._redis = redis
        self._bus = bus
        self.replica_id = bus.replica_id
        self.shared = True
        self.lease_seconds = lease_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._held: set[str] = set()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._calls: HeldCalls | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._serving: set[asyncio.Task[None]] = set()
        bus.on(bus.channel, self._on_message)

    @property
    def held(self) -> int:
        return len(self._held)

    def serve(self, calls: HeldCalls) -> None:
        self._calls = calls

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def close(self) -> None:
        """Stop renewing and let every held call go (the registry stored them first)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for call_id in list(self._held):
            await self.release(call_id)

    # --- leases -----------------------------------------------------------------------------

    async def acquire(self, call_id: str) -> str | None:
        holder = await cast(
            Awaitable[str | None],
            self._acquire(keys=[keys.owner(call_id)], args=[self.replica_id, self.lease_ms]),
        )
        if holder is None:
            self._held.add(call_id)
        return holder

    async def release(self, call_id: str) -> None:
        self._held.discard(call_id)
        try:
            await cast(
                Awaitable[int], self._release(keys=[keys.owner(call_id)], args=[self.replica_id])
            )
        except (RedisError, OSError) as error:  # it expires by itself within a lease
            logger.error(
                "Redis unreachable: a call's lease was not released; it expires by itself",
                extra={"call_id": call_id, "error": str(error)},
            )

    async def holder(self, call_id: str) -> str | None:
        return await cast(Awaitable[str | None], self._redis.get(keys.owner(call_id)))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            held = sorted(self._held)
            if not held:
                continue
            try:
                lost = await cast(
                    Awaitable[list[int]],
                    self._renew(
                        keys=[keys.owner(c) for c in held], args=[self.replica_id, self.lease_ms]
                    ),
                )
            except (RedisError, OSError) as error:
                logger.error(
                    "Redis unreachable: the leases of this replica's calls are not renewed; "
                    "other replicas may take them over",
                    extra={"calls": len(held), "error": str(error)},
                )
                continue
            for index in lost:
                call_id = held[index - 1]
                if call_id in self._held:
                    self._held.discard(call_id)
                    logger.error("another replica took over a call", extra={"call_id": call_id})
                    if self._calls is not None:
                        self._calls.lease_lost(call_id)

    # --- requests to the holder -------------------------------------------------------------

    async def forward_claim(
        self, holder: str, call_id: str, raw_id: str, claim: SpeakerClaim
    ) -> dict[str, Any] | None:
        reply = await self._request(
            holder,
            {
                "op": "claim",
                "call_id": call_id,
                "raw_id": raw_id,
                "speaker_id": claim.speaker_id,
                "threshold": claim.threshold,
                "source": claim.source,
            },
        )
        if reply is not None and "error" in reply:
            raise HolderRefused(reply["error"], reply["status"], reply["detail"])
        participant = None if reply is None else reply.get("participant")
        return participant if isinstance(participant, dict) else None

    async def ask_release(self, holder: str, call_id: str) -> bool:
        reply = await self._request(holder, {"op": "release", "call_id": call_id})
        return reply is not None and reply.get("released") is True

    async def _request(self, holder: str, body: dict[str, Any]) -> dict[str, Any] | None:
        request_id = uuid.uuid4().hex
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        try:
            message = json.dumps({**body, "id": request_id, "from": self.replica_id})
            if not await self._bus.publish(keys.replica_channel(holder), message):
                return None  # nobody listens there: the holder is gone
            return await asyncio.wait_for(reply, REQUEST_SECONDS)
        except TimeoutError:
            logger.warning(
                "the replica holding a call did not answer",
                extra={"call_id": body["call_id"], "holder": holder, "op": body["op"]},
            )
            return None
        finally:
            self._replies.pop(request_id, None)

    # --- requests from other replicas -------------------------------------------------------

    def _on_message(self, data: str) -> None:
        message = json.loads(data)
        if message.get("op") == "reply":
            waiting = self._replies.get(message.get("id", ""))
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
            return
        task = asyncio.get_running_loop().create_task(self._answer(message))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"op": "reply", "id": message.get("id")}
        calls, call_id = self._calls, str(message.get("call_id"))
        if calls is not None and message.get("op") == "claim":
            claim = SpeakerClaim(message["speaker_id"], message["threshold"], message["source"])
            try:
                reply["participant"] = await calls.claim_held(call_id, message["raw_id"], claim)
            except BiometricsError as refused:  # e.g. too many participants: the asker's too
                reply.update(error=refused.code, status=refused.status_code, detail=refused.detail)
        elif calls is not None and message.get("op") == "release":
            reply["released"] = await calls.hand_over(call_id)
        with contextlib.suppress(RedisError, OSError):  # the asker gives up after a second
            await self._bus.publish(
                keys.replica_channel(str(message.get("from"))), json.dumps(reply)
            )
