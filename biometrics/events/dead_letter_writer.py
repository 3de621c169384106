"""Writes the webhook sender's dead letters to the database without ever holding up the
event loop or the sender.

Each write runs in a worker thread. When the database refuses (down, unreachable, locked),
the letters stay in memory, in order, and the whole backlog is tried again after
``retry_seconds`` (doubling up to a minute). The backlog is bounded: past ``backlog``
letters the oldest is dropped, counted in ``lost`` and logged, so that an outage cannot
grow memory without bound. ``close`` makes one last attempt and says how many were not
stored.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from biometrics.store.dead_letters import DeadLetters, Redelivered, Undelivered

logger = logging.getLogger(__name__)

BACKLOG = 1000
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0

Change = Undelivered | Redelivered


class DeadLetterWriter:
    def __init__(
        self, store: DeadLetters, backlog: int = BACKLOG, retry_seconds: float = RETRY_SECONDS
    ) -> None:
        self._store = store
        self._backlog = backlog
        self._retry_seconds = retry_seconds
        self._pending: collections.deque[Change] = collections.deque()
        self._work = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.lost = 0  # dropped from a full backlog, never stored

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, change: Change) -> None:
        """Queue ``change`` to be written; returns at once."""
        if len(self._pending) >= self._backlog:
            dropped = self._pending.popleft()
            self.lost += 1
            if self.lost == 1 or self.lost % 100 == 0:
                logger.error(
                    "webhook dead letters lost: the database has refused them and the "
                    "backlog held in memory is full",
                    extra={"lost": self.lost, "backlog": self._backlog, "dropped": _id(dropped)},
                )
        self._pending.append(change)
        self._work.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> int:
        """Write what is pending (one last attempt); the number of letters not stored."""
        self._closing.set()
        self._work.set()
        if self._task is not None:
            await self._task
        elif self._pending:
            await self._save()
        return len(self._pending)

    async def _run(self) -> None:
        delay = self._retry_seconds
        while True:
            if not self._pending:
                if self._closing.is_set():
                    return
                await self._work.wait()
            self._work.clear()
            if await self._save():
                delay = self._retry_seconds
                continue
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
            delay = min(2.0 * delay, MAX_RETRY_SECONDS)

    async def _save(self) -> bool:
        batch = list(self._pending)
        try:
            await asyncio.to_thread(self._store.save, batch)
        # Whatever the database does, the sender goes on: the letters stay in memory.
        except Exception as error:
            logger.error(
                "webhook dead letters not stored yet; kept in memory and tried again",
                extra={"pending": len(batch), "error": f"{type(error).__name__}: {error}"},
            )
            return False
        # Letters added meanwhile stay; the oldest of the batch may have been dropped
        # already by a full backlog, so the batch is taken out by identity.
        saved = {id(change) for change in batch}
        self._pending = collections.deque(c for c in self._pending if id(c) not in saved)
        return True


def _id(change: Change) -> str:
    if isinstance(change, Undelivered):
        return change.event_id
    return f"dead letter {change.dead_letter_id}"
