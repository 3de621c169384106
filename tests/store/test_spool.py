"""biometrics.store.spool on a real SQLite database that is away and comes back (a folder
that does not exist yet cannot hold the file): rows wait in order, a full spool drops its
oldest and counts them, the writer puts what waited into the table once it answers, and
a stop says what is lost."""

from __future__ import annotations

import time

import pytest

from biometrics.store import Database
from biometrics.store.audit import AuditLog, AuditQuery, Origin
from biometrics.store.spool import Spool, SpoolCounts

ORIGIN = Origin("service")


@pytest.fixture
def away(tmp_path):
    """A database whose file cannot be opened until its folder is made and migrated."""
    folder = tmp_path / "later"
    database = Database(f"sqlite:///{folder / 'biometrics.db'}")
    yield database, folder
    database.dispose()


def come_back(database, folder):
    folder.mkdir()
    database.upgrade()


def subjects(database):
    return [row.subject for row in AuditLog(database).query(AuditQuery(limit=100))]


def test_rows_wait_in_order_and_a_full_spool_drops_the_oldest(away):
    database, folder = away
    spool = Spool(database, max_rows=3)
    log = AuditLog(database, spool)
    for number in range(5):
        log.record(ORIGIN, "call.verdict", f"speaker-{number}", "ACCEPT")

    assert spool.counts() == SpoolCounts(pending=3, written=0, dropped=2)
    come_back(database, folder)
    assert spool.stop() == SpoolCounts(pending=0, written=3, dropped=2)
    assert subjects(database) == ["speaker-2", "speaker-3", "speaker-4"]


def test_the_writer_puts_waiting_rows_in_the_table_once_the_database_answers(away):
    database, folder = away
    spool = Spool(database, max_rows=100, retry_seconds=0.05)
    spool.start()
    log = AuditLog(database, spool)
    log.record(ORIGIN, "call.verdict", "during", "REJECT")
    time.sleep(0.2)  # several tries of the writer, all refused
    assert spool.counts().pending == 1

    come_back(database, folder)
    log.record(ORIGIN, "call.verdict", "after", "ACCEPT")  # behind the waiting row, never ahead
    deadline = time.monotonic() + 5
    while spool.counts().pending and time.monotonic() < deadline:
        time.sleep(0.02)
    counts = spool.stop()
    # "after" waited too unless the writer had emptied the spool already: either way it
    # reaches the table after the row that waited before it.
    assert (counts.pending, counts.dropped) == (0, 0) and counts.written in (1, 2)
    assert subjects(database) == ["during", "after"]


def test_a_stop_while_the_database_is_away_reports_what_is_lost(away):
    database, _ = away
    spool = Spool(database, max_rows=10)
    AuditLog(database, spool).record(ORIGIN, "call.verdict", "lost", "ACCEPT")
    assert spool.stop() == SpoolCounts(pending=1, written=0, dropped=0)
