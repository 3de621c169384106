"""The replica topology on one machine, from local processes: a ``redis-server``, N
``biometrics serve`` replicas sharing one database and that Redis, and ``haproxy`` in front
of them, all on loopback ports. ``biometrics cluster`` runs it for a developer; the
end-to-end tests and the live-call benchmark start the same one.

The replicas are the soak's subprocesses (``biometrics.soak.service``): one environment
(database, voiceprint key, model, webhooks) and one admin and one stream key between them.
Redis keeps nothing on disk (no snapshot, no append-only file; its folder is the
cluster's). HAProxy's configuration is ``haproxy_config``, the one ``deploy/haproxy.cfg``
is written from: WebSocket-aware (a socket or an event stream is a tunnel that lives as
long as its call), health checks on ``/readyz``, the least-connections balance that
spreads long-lived sockets, failed connections redispatched to another replica, and the
answering replica named in ``X-Biometrics-Replica``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa

from biometrics.errors import BiometricsError
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.service import (
    REPLICA_HEADER,
    Endpoint,
    Service,
    free_port,
    service_env,
    start_services,
)

START_SECONDS = 30.0  # for redis-server and haproxy, which start in milliseconds
HEALTH_CHECK_SECONDS = 1.0  # HAProxy's interval: a dead replica is out within two
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ClusterError(BiometricsError):
    """The topology cannot start: a binary is missing or a process did not come up."""

    code = "cluster_unavailable"


@dataclasses.dataclass(frozen=True)
class Server:
    """One replica as HAProxy names and reaches it."""

    name: str
    address: str  # host:port


def haproxy_config(port: int, servers: Sequence[Server], bind: str = "127.0.0.1") -> str:
    """HAProxy's configuration for ``servers`` behind ``bind:port``."""
    lines = "\n".join(f"    server {server.name} {server.address} check" for server in servers)
    return f"""\
# HAProxy in front of biometrics replicas (biometrics.topology.haproxy_config writes it).
global
    # A call holds a socket and perhaps an event stream; each costs HAProxy two descriptors.
    maxconn 8000
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    # Event streams send a keep-alive every 15 s, well inside these.
    timeout client 60s
    timeout server 60s
    # A call's socket is a tunnel once upgraded: it lives as long as the call.
    timeout tunnel 2h
    timeout client-fin 5s
    # A request whose replica died before the health check saw it goes to another one.
    retries 3
    option redispatch
    retry-on conn-failure empty-response

frontend biometrics
    bind {bind}:{port}
    default_backend replicas

backend replicas
    # Sockets are long-lived: spread them by open connections, not by turns.
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    # Which replica answered: a call's socket names the replica that holds it.
    http-response set-header {REPLICA_HEADER} %s
    default-server inter {HEALTH_CHECK_SECONDS:g}s fall 2 rise 1 init-addr last,libc,none
{lines}
"""


@dataclasses.dataclass
class Cluster:
    """The running topology: the balancer's endpoint (keys included), each replica, Redis."""

    folder: Path
    balancer: Endpoint
    replicas: list[Service]
    redis_url: str
    haproxy_process: subprocess.Popen[bytes] | None = None

    def replica(self, name: str) -> Service:
        """The replica HAProxy calls ``name`` (``replica1`` ...)."""
        return self.replicas[_index(name)]

    def kill(self, name: str) -> None:
        """SIGKILL one replica: its sockets drop, HAProxy marks it down."""
        self.replica(name).kill()

    def restart(self, name: str) -> None:
        """Stop one replica gracefully (SIGTERM), start it again on its port, and wait for
        HAProxy to take it back."""
        index = _index(name)
        self.replicas[index].stop()
        self.replicas[index] = self.replicas[index].restarted()
        self.wait_in_service(name)

    def wait_in_service(self, name: str) -> None:
        """Until the balancer sends requests to ``name`` again (its health checks passed):
        ``/readyz`` through it, until one answer names that replica."""
        deadline = time.monotonic() + START_SECONDS
        with httpx.Client(base_url=self.balancer.url, timeout=5) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").headers.get(REPLICA_HEADER) == name:
                        return
                time.sleep(0.05)
        raise ClusterError(f"haproxy did not take {name} in within {START_SECONDS:g} s")

    def stop(self) -> list[int | None]:
        """Every replica SIGTERMed (their exit statuses), then HAProxy."""
        statuses = [replica.stop() for replica in self.replicas]
        if self.haproxy_process is not None:
            _terminate(self.haproxy_process)
        return statuses


def _index(name: str) -> int:
    return int(name.removeprefix("replica")) - 1


@contextlib.contextmanager
def running(
    folder: Path,
    database_url: str,
    replicas: int,
    model: str,
    webhook: WebhookSink | None = None,
    settings: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Cluster]:
    """The topology in ``folder`` (logs, Redis's folder, HAProxy's configuration), each
    replica started with ``service_env`` and ``settings``, stopped on leaving; the balancer
    on ``port`` (a free one if None)."""
    binaries = {name: shutil.which(name) for name in ("redis-server", "haproxy")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        raise ClusterError(
            f"{' and '.join(missing)} not found on PATH: install Debian's package of the "
            "same name (apt-get install redis-server haproxy)"
        )
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(folder))
        env = service_env(
            folder,
            database_url,
            model,
            webhook,
            {**(settings or {}), "BIOMETRICS_REDIS_URL": redis_url},
        )
        places = [(free_port(), folder / f"replica{n + 1}.log") for n in range(replicas)]
        try:
            services = start_services(env, places, key_name="cluster")
        except SoakError as error:
            raise ClusterError(f"the replicas did not start: {error}") from None
        keys = services[0]
        balancer_port = port or free_port()
        balancer = Endpoint(f"http://127.0.0.1:{balancer_port}", keys.admin_key, keys.stream_key)
        cluster = Cluster(folder, balancer, services, redis_url)
        stack.callback(cluster.stop)  # before Redis stops: the replicas hand their calls back
        servers = [Server(f"replica{n + 1}", f"127.0.0.1:{p}") for n, (p, _) in enumerate(places)]
        cluster.haproxy_process = _start_haproxy(
            str(binaries["haproxy"]), folder, balancer_port, servers
        )
        for server in servers:
            cluster.wait_in_service(server.name)
        yield cluster


def run_until_stopped(
    folder: Path,
    database_url: str,
    replicas: int,
    model: str,
    port: int,
    settings: Mapping[str, str],
    say: Callable[[str], None],
) -> None:
    """``biometrics cluster``: the topology up (``running``), what runs and its keys told to
    ``say``, until SIGINT or SIGTERM; then everything stopped."""
    if replicas > 1 and sa.make_url(database_url).get_backend_name() != "postgresql":
        raise ClusterError(
            f"{replicas} replicas share one PostgreSQL database, not {database_url}: set "
            "BIOMETRICS_DATABASE_URL=postgresql+psycopg://user:password@host/database"
        )
    stopping = threading.Event()
    asked = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in STOP_SIGNALS}
    try:
        with running(folder, database_url, replicas, model, None, settings, port) as cluster:
            say(f"balancer  {cluster.balancer.url}  (HAProxy; sockets at ws://.../ws/acs)")
            for index, replica in enumerate(cluster.replicas, start=1):
                say(f"replica{index}  {replica.url}  log {replica.log}")
            say(f"redis     {cluster.redis_url}")
            say(f"admin key   {cluster.balancer.admin_key}")
            say(f"stream key  {cluster.balancer.stream_key}")
            say("Ctrl-C stops them all.")
            stopping.wait()
            say("stopping ...")
    finally:
        for sig, handler in asked.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A ``redis-server`` of its own on a free loopback port, its folder in ``folder`` and
    nothing persisted (call state is live state, rebuilt from the database when lost); its
    URL, until the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ClusterError("redis-server not found on PATH: apt-get install redis-server")
    port = free_port()
    data = folder / "redis"
    data.mkdir(exist_ok=True)
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data)]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    with (folder / "redis.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_redis(url, process, folder / "redis.log")
        yield url
    finally:
        _terminate(process)


def _wait_for_redis(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + START_SECONDS
    try:
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"redis-server did not start: see {log}")
            time.sleep(0.05)
    finally:
        client.close()


def _start_haproxy(
    binary: str, folder: Path, port: int, servers: Sequence[Server]
) -> subprocess.Popen[bytes]:
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(port, servers))
    checked = subprocess.run(
        [binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        raise ClusterError(f"haproxy refused {config}: {checked.stderr.strip()}")
    with (folder / "haproxy.log").open("ab") as log:
        # -db: in the foreground, stopped by SIGTERM like the rest.
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_SECONDS
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            _terminate(process)
            raise ClusterError(f"haproxy did not start: see {folder / 'haproxy.log'}")
        time.sleep(0.05)
    return process


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
