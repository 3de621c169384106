"""``biometrics serve`` as the soak runs it: a subprocess with a folder, keys and a log of its
own, on SQLite or on a fresh PostgreSQL database."""

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
from collections.abc import Iterator, Mapping
from pathlib import Path

import sqlalchemy as sa

from biometrics.client import Client, ClientError, RetryPolicy
from biometrics.soak.malformed import MAX_MESSAGE_BYTES
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink

START_SECONDS = 120.0  # for the service to answer /readyz
STOP_SECONDS = 60.0
CLEAN_EXITS = (0,)  # `biometrics serve` exits 0 once SIGTERM's graceful shutdown is done


@dataclasses.dataclass
class Service:
    """``biometrics serve`` as a subprocess, with its keys and its log."""

    url: str
    admin_key: str
    stream_key: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def socket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/acs"

    def client(self) -> Client:
        return Client(self.url, api_key=self.admin_key, retry=RetryPolicy(retries=5))

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


def start_service(
    folder: Path,
    database_url: str,
    model: str,
    webhook: WebhookSink,
    settings: Mapping[str, str] | None = None,
) -> Service:
    """The service on ``database_url`` with ``model``, its events posted to ``webhook``;
    ``settings`` (``BIOMETRICS_*`` variables) override the environment and the soak's own."""
    key_file = folder / "voiceprints.key"
    key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    key_file.chmod(0o600)
    env = {
        **os.environ,
        "BIOMETRICS_DATABASE_URL": database_url,
        "BIOMETRICS_ENCRYPTION_KEY_FILE": str(key_file),
        "BIOMETRICS_MODEL_SOURCE": model,
        "BIOMETRICS_MODEL_CACHE_DIR": str(folder / "models"),
        "BIOMETRICS_WEBHOOK_URLS": webhook.url,
        "BIOMETRICS_WEBHOOK_SECRET": webhook.secret,
        # Impostor calls would lock the speakers out within minutes and the soak's requests
        # exceed a key's default rate: both are checked elsewhere, and would only hide here
        # whether verdicts and events get through.
        "BIOMETRICS_LOCKOUT_FAILURES": "0",
        "BIOMETRICS_RATE_LIMIT_PER_MINUTE": "0",
        "BIOMETRICS_LOG_FORMAT": "json",
        "BIOMETRICS_AUTH_ENABLED": "true",
        # The oversized messages are sized on this limit.
        "BIOMETRICS_STREAM_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        **(settings or {}),
    }
    # The first key applies the migrations; the second is made while the service starts,
    # which imports the same heavy modules (torch): on two CPUs that halves the wait.
    admin_key = _key_made(_make_key(env, "admin"), "admin")
    making_stream_key = _make_key(env, "stream")
    port = _free_port()
    log = folder / "service.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "biometrics", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        stream_key = _key_made(making_stream_key, "stream")
    except SoakError:
        process.kill()
        process.wait()
        raise
    service = Service(f"http://127.0.0.1:{port}", admin_key, stream_key, process, log)
    _wait_ready(service)
    return service


def _make_key(env: dict[str, str], role: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "biometrics", "keys", "create", "--role", role, "--name", "soak"],
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


def _free_port() -> int:
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
