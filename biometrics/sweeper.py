"""The service's periodic lifecycle sweep: :func:`biometrics.store.lifecycle.sweep` at start
and then every interval, in a thread of its own so that the event loop never waits on it.

A sweep that fails (the database is down, a role may not delete) is logged and tried again
at the next interval; the service goes on serving. Stopping lets a running sweep finish
its current batch, no more, so that a shutdown does not wait for a long first sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

# The blocking sweep; it returns once the event is set, after its current batch.
Job = Callable[[threading.Event], object]


class PeriodicSweep:
    def __init__(self, job: Job, interval_seconds: float) -> None:
        self._job = job
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sweep")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Waits for a sweep in progress, which the event ends after its current batch.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await loop.run_in_executor(self._executor, self._job, self._stop)
            except Exception as error:
                logger.error(
                    "the lifecycle sweep failed; it is tried again at the next interval",
                    exc_info=True,
                    extra={
                        "error": " ".join(str(error).split())[:500],
                        "retry_in_seconds": self._interval,
                    },
                )
            await asyncio.sleep(self._interval)
