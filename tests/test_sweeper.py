"""biometrics.sweeper: the service's periodic sweep runs at start and every interval, in a
thread, survives a failing run, and stops at once; the application starts it unless the
interval is 0."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from datetime import timedelta

import sqlalchemy as sa
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.clock import utcnow
from biometrics.store import Database
from biometrics.store.models import Speaker
from biometrics.sweeper import PeriodicSweep
from tests.api.helpers import enroll
from tests.conftest import bearer


def test_it_runs_every_interval_in_a_thread_and_survives_failures(caplog):
    runs: list[str] = []

    def job(stop: threading.Event) -> None:
        runs.append(threading.current_thread().name)
        if len(runs) == 2:
            raise RuntimeError("database is down")

    async def main() -> None:
        sweeper = PeriodicSweep(job, 0.01)
        sweeper.start()
        while len(runs) < 4:
            await asyncio.sleep(0.01)
        await sweeper.stop()

    with caplog.at_level(logging.ERROR, logger="biometrics.sweeper"):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert all(name.startswith("sweep") for name in runs)
    failures = [record for record in caplog.records if "sweep failed" in record.message]
    assert len(failures) == 1 and failures[0].error == "database is down"


def test_stopping_ends_a_running_sweep_after_its_batch():
    started, seen = threading.Event(), []

    def job(stop: threading.Event) -> None:
        started.set()
        seen.append(stop.wait(10))  # a long sweep, checking between batches

    async def main() -> None:
        sweeper = PeriodicSweep(job, 3600)
        sweeper.start()
        await asyncio.get_running_loop().run_in_executor(None, started.wait)
        await sweeper.stop()

    asyncio.run(asyncio.wait_for(main(), 5))
    assert seen == [True]


def test_the_service_sweeps_at_start(settings, encoder, admin_key):
    with TestClient(create_app(settings, encoder=encoder), headers=bearer(admin_key)) as client:
        enroll(client, "ada", seconds=10.0)
    database = Database(settings.database_url)
    with database.session() as session:
        session.execute(sa.update(Speaker).values(last_accessed_at=utcnow() - timedelta(days=1096)))
    app = create_app(dataclasses.replace(settings, sweep_interval_seconds=1), encoder=encoder)
    with TestClient(app, headers=bearer(admin_key)) as client:
        for _ in range(200):
            if client.get("/v1/speakers/ada").json()["status"] == "EXPIRED":
                break
            time.sleep(0.05)
        assert client.get("/v1/speakers/ada").json()["status"] == "EXPIRED"
    database.dispose()
