"""The shared state of one replica, built from ``BIOMETRICS_REDIS_URL``: its Redis client,
its pub/sub bus, the call leases, the event log and the webhook feed, started and stopped
together by the application."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from biometrics.cluster.bus import Bus
from biometrics.cluster.events import SharedEvents, WebhookFeed
from biometrics.cluster.ownership import RedisOwnership
from biometrics.events.broker import Broker

logger = logging.getLogger(__name__)

PING_SECONDS = 1.0
CONNECT_SECONDS = 2.0


def replica_id() -> str:
    """Unique per process, and readable in logs and in Redis (host and pid)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SharedState:
    def __init__(
        self,
        url: str,
        broker: Broker,
        *,
        lease_seconds: float,
        events_ttl_seconds: int,
        webhooks: bool,
        webhook_claim_idle_seconds: float,
    ) -> None:
        self.redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_SECONDS,
            health_check_interval=30,
        )
        self.replica_id = replica_id()
        self.bus = Bus(self.redis, self.replica_id)
        self.ownership = RedisOwnership(self.redis, self.bus, lease_seconds)
        self.events = SharedEvents(self.redis, self.bus, broker, events_ttl_seconds, webhooks)
        self.webhook_feed = WebhookFeed(self.redis, self.replica_id, webhook_claim_idle_seconds)

    def start(self) -> None:
        self.bus.start()
        self.ownership.start()
        self.events.start()
        logger.info("sharing live calls through Redis", extra={"replica": self.replica_id})

    async def close(self) -> None:
        """After the calls stopped: their last events written, their leases released."""
        await self.events.close()
        await self.ownership.close()
        await self.bus.close()
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), PING_SECONDS))
        except (RedisError, OSError, TimeoutError) as error:
            logger.error("Redis unreachable", extra={"error": str(error)})
            return False
