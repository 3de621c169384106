"""One pub/sub connection per replica: every call event (for the SSE subscribers here) and
the requests and replies addressed to this replica. A dropped connection is logged and
opened again after a second; what was published meanwhile did not reach this replica
(SSE clients catch up from the call's stream with ``Last-Event-ID``, and a request
unanswered is retried by its sender)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from biometrics.cluster import keys

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0

Handler = Callable[[str], None]


class Bus:
    def __init__(self, redis: Redis, replica_id: str) -> None:
        self._redis = redis
        self.replica_id = replica_id
        self.channel = keys.replica_channel(replica_id)
        self._handlers: dict[str, Handler] = {}
        self._listener: asyncio.Task[None] | None = None

    def on(self, channel: str, handler: Handler) -> None:
        """Hand each message of ``channel`` to ``handler`` (on the event loop, in order)."""
        self._handlers[channel] = handler

    def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen_forever())

    async def publish(self, channel: str, message: str) -> int:
        """How many replicas were listening on ``channel``: 0 means none is alive there."""
        receivers: int = await self._redis.publish(channel, message)
        return receivers

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen_forever(self) -> None:
        lost = False  # logged once per outage, not once per attempt
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)
                if lost:
                    lost = False
                    logger.info("Redis pub/sub connection back: replicas share again")
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._dispatch(message)
            except (RedisError, OSError) as error:
                if not lost:
                    lost = True
                    logger.error(
                        "Redis pub/sub connection lost: events and requests from other "
                        "replicas do not reach this one until it is back",
                        extra={"error": str(error), "retry_seconds": RECONNECT_SECONDS},
                    )
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, message: dict[str, object]) -> None:
        channel, data = message.get("channel"), message.get("data")
        handler = self._handlers.get(str(channel))
        if handler is None or not isinstance(data, str):
            return
        try:
            handler(data)
        except Exception:
            logger.exception(
                "a message from Redis could not be handled", extra={"channel": channel}
            )
