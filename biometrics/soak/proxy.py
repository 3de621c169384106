"""A TCP proxy on loopback that can be switched off: the soak's database fault, and the
tests' way to take PostgreSQL away from the service without stopping the server everyone
else uses."""

from __future__ import annotations

import contextlib
import socket
import threading

ACCEPT_POLL_SECONDS = 0.1  # how soon the accepting thread notices ``close``, wherever
# shutting the listener down does not wake it


class TcpProxy:
    """A TCP forwarder to ``target``, forwarding from construction on; ``down`` cuts every
    connection and refuses new ones (accepts and closes them, so that the port stays taken
    and nothing else answers there) until ``up``: the database unreachable, as on a network
    cut. ``close`` (or the end of its ``with`` block) stops it for good."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._down = False
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_forever, daemon=True)
        self._acceptor.start()

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
        """Stop accepting (waiting for the accepting thread, so that no connection gets
        through afterwards), then cut every connection."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join()
        self.down()
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
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
                cut = self._down  # switched off while connecting: refused after all
                if not cut:
                    self._open.update((client, server))
            if cut:
                _shut(client)
                _shut(server)
                continue
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
