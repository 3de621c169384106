"""Stopping the service, as an operator's process manager does, on a real process:
SIGTERM in the middle of a call finalises its verdicts, delivers them and exits 0; SIGKILL
in the middle of an enrollment leaves no partial voiceprint."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from biometrics import simulator
from biometrics.soak.service import free_port
from biometrics.store import Database
from tests.conftest import TEST_ENCRYPTION_KEY, admin_key_for, bearer
from tests.events.receiver import WebhookReceiver
from tests.streaming.helpers import START, voice
from tests.test_cli import BIOMETRICS, clean_env
from tests.voices import wav_bytes

SECRET = "shutdown-secret"
ALICE = "8:acs:alice"


class Service:
    """``biometrics serve`` in a process of its own, on a SQLite file."""

    def __init__(self, tmp_path: Path, model_folder: Path, **variables: str) -> None:
        self.database_url = f"sqlite:///{tmp_path / 'biometrics.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(
            tmp_path,
            BIOMETRICS_DATABASE_URL=self.database_url,
            BIOMETRICS_MODEL_SOURCE=str(model_folder),
            BIOMETRICS_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
            BIOMETRICS_MIN_ENROLL_SPEECH_SECONDS="4",
            BIOMETRICS_MIN_VERIFY_SPEECH_SECONDS="1",
            BIOMETRICS_STREAM_STEP_SECONDS="1",
            BIOMETRICS_STREAM_MAX_SPEECH_SECONDS="30",
            **variables,
        )
        self.cwd = tmp_path
        Database(self.database_url).upgrade()
        self.key = admin_key_for(self.database_url)
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Service]:
        self.process = subprocess.Popen(
            [*BIOMETRICS, "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            self._wait_ready()
            yield self
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.output += self.process.communicate(timeout=60)[0]

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[0]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        pytest.fail("the service did not become ready")

    def stop(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def rows(self, sql: str) -> list[sa.Row]:
        database = Database(self.database_url)
        try:
            with database.engine.connect() as connection:
                return list(connection.execute(sa.text(sql)))
        finally:
            database.dispose()


def enroll(http: httpx.Client, seconds: float, seed: int, **params: str) -> httpx.Response:
    upload = {"audio": ("voice.wav", wav_bytes(voice(seconds, "a", seed=seed)), "audio/wav")}
    return http.post("/v1/speakers/alice/enrollments", files=upload, params=params)


def test_sigterm_mid_call_finalises_the_verdict_delivers_it_and_exits_0(tmp_path, model_folder):
    with WebhookReceiver(SECRET).running() as receiver:
        service = Service(
            tmp_path,
            model_folder,
            BIOMETRICS_WEBHOOK_URLS=receiver.url,
            BIOMETRICS_WEBHOOK_SECRET=SECRET,
        )
        with service.running():
            with httpx.Client(
                base_url=service.url, headers=bearer(service.key), timeout=60
            ) as http:
                assert enroll(http, 6.0, seed=1).json()["status"] == "ENROLLED"
                path = f"/v1/calls/call-1/participants/{urllib.parse.quote(ALICE, safe='')}/claim"
                assert http.put(path, json={"speaker_id": "alice"}).status_code == 200
            closed: list[str] = []

            def call() -> None:
                try:
                    asyncio.run(
                        simulator.stream_call(
                            service.url.replace("http://", "ws://")
                            + f"/ws/acs?token={service.key}",
                            {"x-ms-call-connection-id": "call-1"},
                            simulator.call_format(16_000, "sub-1"),
                            simulator.frames_for(
                                [
                                    simulator.Stream(
                                        ALICE, simulator.to_pcm(voice(20.0, "a", seed=2))
                                    )
                                ],
                                16_000,
                                START,
                            ),
                            realtime=True,
                        )
                    )
                except simulator.CallFailed as failed:
                    closed.append(str(failed))

            caller = threading.Thread(target=call)
            caller.start()
            receiver.wait_for(
                lambda got: sum(e["type"] == "biometrics.verdict.changed" for e in got) >= 3
            )
            assert service.stop(signal.SIGTERM) == 0
            caller.join(timeout=30)
        assert "1012" in closed[0]  # the service closed the socket: it is restarting
        stored = service.rows(
            "SELECT verdict_id, final, speech_seconds FROM verdicts WHERE call_id = 'call-1' "
            "ORDER BY id"
        )
        last = stored[-1]
        assert last.final and 2.0 <= last.speech_seconds < 20.0  # mid-call, made final
        delivered = receiver.wait_for(
            lambda got: any(e["type"] == "biometrics.call.ended" for e in got)
        )
    verdicts = [e["data"] for e in delivered if e["type"] == "biometrics.verdict.changed"]
    assert verdicts[-1]["verdict_id"] == last.verdict_id and verdicts[-1]["final"]
    assert {v["verdict_id"] for v in verdicts} <= {row.verdict_id for row in stored}
    assert service.rows("SELECT status FROM calls WHERE call_id = 'call-1'")[0].status == "ENDED"
    assert "shutdown complete" in service.output
    assert '"calls_finalised": 1' in service.output and '"final_verdicts": 1' in service.output


def test_sigkill_mid_enrollment_leaves_the_old_voiceprint_or_the_whole_new_one(
    tmp_path, model_folder
):
    service = Service(tmp_path, model_folder)
    with service.running():
        with httpx.Client(base_url=service.url, headers=bearer(service.key), timeout=60) as http:
            assert enroll(http, 6.0, seed=1).json()["status"] == "ENROLLED"
        before = service.rows("SELECT * FROM voiceprints")
        sent = threading.Event()
        body = wav_bytes(voice(55.0, "a", seed=3))

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 64 * 1024):
                yield body[start : start + 64 * 1024]
            sent.set()

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{service.url}/v1/speakers/alice/enrollments?replace=true",
                    content=chunks(),
                    headers={**bearer(service.key), "content-type": "audio/wav"},
                    timeout=60,
                )

        uploading = threading.Thread(target=upload)
        uploading.start()
        assert sent.wait(30)
        time.sleep(0.2)  # decoding and embedding 55 s of speech: the enrollment is under way
        assert service.stop(signal.SIGKILL) == -signal.SIGKILL
        uploading.join(timeout=30)

    assert service.rows("PRAGMA integrity_check")[0][0] == "ok"
    after = service.rows("SELECT * FROM voiceprints")
    speaker = service.rows("SELECT status FROM speakers WHERE speaker_id = 'alice'")[0]
    assert len(after) == 1 and speaker.status == "ENROLLED"
    if after != before:  # the new voiceprint, whole: 55 s of speech in it
        assert after[0].speech_seconds > 40
    with (
        service.running(),  # and the service starts again on it
        httpx.Client(base_url=service.url, headers=bearer(service.key), timeout=60) as http,
    ):
        assert http.get("/v1/speakers/alice").json()["status"] == "ENROLLED"
