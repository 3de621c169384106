"""``biometrics serve`` as the soak, the benchmarks and the cluster launcher run it: a
subprocess with a folder, keys and a log of its own (or several sharing one environment and
their keys), on SQLite or on a fresh PostgreSQL database."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa

from biometrics.client import Client, ClientError, RetryPolicy
from biometrics.soak.malformed import MAX_MESSAGE_BYTES
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink

START_SECONDS = 120.0  # for the service to answer /readyz
STOP_SECONDS = 60.0
# A balancer in front of several services names the one that answered in this header
# (biometrics.topology's HAProxy does): which replica took a call's socket.
REPLICA_HEADER = "X-Biometrics-Replica"
CLEAN_EXITS = (0,)  # `biometrics serve` exits 0 once SIGTERM's graceful shutdown is done


@dataclasses.dataclass
class Endpoint:
    """Where the service answers (one process, or a balancer in front of several), and the
    keys the harness uses there."""

    url: str
    admin_key: str
    stream_key: str

    @property
    def socket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/acs"

    def client(self) -> Client:
        return Client(self.url, api_key=self.admin_key, retry=RetryPolicy(retries=5))


@dataclasses.dataclass
class Service(Endpoint):
    """``biometrics serve`` as a subprocess, with its environment and its log."""

    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> int | None:
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as a box that loses its power."""
        self.process.kill()
        self.process.wait()

    def restarted(self) -> Service:
        """The same service started again on its port (its log appended), once ready."""
        service = dataclasses.replace(self, process=_spawn(self.env, self.port, self.log))
        _wait_ready(service)
        return service


# What the harnesses relax (the soak, the benchmarks, the cluster's tests): impostor calls
# would lock the speakers out within minutes and the soak's requests exceed a key's default
# rate. Both are checked elsewhere, and would only hide here whether verdicts and events get
# through. The oversized messages are sized on the message limit.
HARNESS_SETTINGS = {
    "BIOMETRICS_LOCKOUT_FAILURES": "0",
    "BIOMETRICS_RATE_LIMIT_PER_MINUTE": "0",
    "BIOMETRICS_STREAM_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
}


def service_env(
    folder: Path,
    database_url: str,
    model: str,
    webhook: WebhookSink | None,
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service on ``database_url`` with ``model`` (auth on, JSON logs),
    its events posted to ``webhook``; ``settings`` (``BIOMETRICS_*`` variables) override the
    environment and these. Without a voiceprint key in either, a new one is made in
    ``folder`` (for a new database). Every replica of one database is started with the same
    environment: they share its voiceprint key."""
    env = {
        **os.environ,
        "BIOMETRICS_DATABASE_URL": database_url,
        "BIOMETRICS_MODEL_SOURCE": model,
        "BIOMETRICS_MODEL_CACHE_DIR": str(folder / "models"),
        "BIOMETRICS_LOG_FORMAT": "json",
        "BIOMETRICS_AUTH_ENABLED": "true",
        **(
            {}
            if webhook is None
            else {
                "BIOMETRICS_WEBHOOK_URLS": webhook.url,
                "BIOMETRICS_WEBHOOK_SECRET": webhook.secret,
            }
        ),
        **(settings or {}),
    }
    if not {"BIOMETRICS_ENCRYPTION_KEY", "BIOMETRICS_ENCRYPTION_KEY_FILE"} & env.keys():
        key_file = folder / "voiceprints.key"
        key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
        key_file.chmod(0o600)
        env["BIOMETRICS_ENCRYPTION_KEY_FILE"] = str(key_file)
    return env


def start_service(
    folder: Path,
    database_url: str,
    model: str,
    webhook: WebhookSink,
    settings: Mapping[str, str] | None = None,
) -> Service:
    """One service on ``database_url`` (``service_env``, relaxed as ``HARNESS_SETTINGS``
    says, then ``settings``), once it is ready."""
    env = service_env(
        folder, database_url, model, webhook, {**HARNESS_SETTINGS, **(settings or {})}
    )
    return start_services(env, [(free_port(), folder / "service.log")])[0]


def start_services(
    env: dict[str, str], places: Sequence[tuple[int, Path]], key_name: str = "soak"
) -> list[Service]:
    """A service on each (port, log) of ``places``, all with ``env`` and one admin and one
    stream key between them, once every one is ready."""
    # The first key applies the migrations; the second is made while the services start,
    # which import the same heavy modules (torch): on two CPUs that halves the wait.
    admin_key = _key_made(_make_key(env, "admin", key_name), "admin")
    making_stream_key = _make_key(env, "stream", key_name)
    processes = [(port, log, _spawn(env, port, log)) for port, log in places]
    try:
        stream_key = _key_made(making_stream_key, "stream")
    except SoakError:
        for _, _, process in processes:
            process.kill()
            process.wait()
        raise
    services = [
        Service(f"http://127.0.0.1:{port}", admin_key, stream_key, process, log, env)
        for port, log, process in processes
    ]
    for index, service in enumerate(services):
        try:
            _wait_ready(service)
        except SoakError:
            for other in services[index + 1 :]:
                other.stop()
            raise
    return services


def _spawn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "biometrics", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _make_key(env: dict[str, str], role: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "biometrics", "keys", "create", "--role", role, "--name", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _key_made(making: subprocess.Popen[str], role: str) -> str:
    """The key ``biometrics keys create`` printed on its last line."""
    stdout, stderr = making.communicate()
    if making.returncode != 0:
        raise SoakError(f"biometrics keys create --role {role} failed: {stderr.strip()}")
    return stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(service: Service) -> None:
    deadline = time.monotonic() + START_SECONDS
    with Client(service.url, retry=RetryPolicy(retries=0), timeout=5) as api:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                tail = service.log.read_text(errors="replace")[-2000:]
                raise SoakError(f"the service exited with {service.process.returncode}:\n{tail}")
            with contextlib.suppress(ClientError):
                if api.ready().ready:
                    return
            time.sleep(0.5)
    service.stop()
    raise SoakError(f"the service did not become ready within {START_SECONDS:g} s")


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new database on the server of ``admin_url``, dropped afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"biometrics_soak_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.SQLAlchemyError as error:
        admin.dispose()
        raise SoakError(f"cannot create a database with --postgres-url: {error}") from None
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError), admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def via_proxy(url: str, port: int) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
