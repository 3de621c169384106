"""The HTTP server ``biometrics serve`` runs: uvicorn's, stopping gracefully on SIGTERM or
SIGINT and then exiting 0.

uvicorn stops accepting, closes every connection (live-call sockets with 1012), waits up
to its graceful-shutdown timeout for them to finish, runs the application's shutdown
(final verdicts written, events delivered) and then raises the signal it caught again, so
that the process dies of it (exit -15). A stop that completed is a clean exit here: the
signal is not raised again. A second signal still stops at once, as uvicorn does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from socket import socket

import uvicorn


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        self._drain()  # before the sockets close: the calls they end end for good
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()  # stopped as asked: nothing to raise again
