"""Rows that could not be written because the database was unreachable, kept in memory and
written when it answers again: a live call's verdicts and audit rows survive an outage.

A write goes to the database at once when nothing is waiting; when the database cannot be
reached (:func:`~biometrics.store.database.is_unavailable`), or rows are already waiting,
it joins the queue, so that rows reach the table in the order they were made. One thread
writes the queue, oldest first, each row in its own transaction, retrying every
``retry_seconds`` while the database stays away. Each write must be idempotent (a verdict
is looked up by its unique ``verdict_id`` first): a commit whose answer was lost may be
tried again.

The queue is bounded at ``max_rows``: when it is full the oldest row is dropped, counted
and logged (a warning at the first drop and every thousandth after). A process that ends
during an outage loses what is still queued; :meth:`Spool.stop` says how many.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from biometrics.store.database import Database, is_unavailable

logger = logging.getLogger(__name__)

Write = Callable[[Session], None]  # idempotent: run again, it writes nothing twice
DROP_LOG_EVERY = 1000


@dataclasses.dataclass(frozen=True)
class SpoolCounts:
    pending: int  # rows waiting for the database now
    written: int  # rows written after waiting, since start
    dropped: int  # rows lost because the spool was full, since start

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Row:
    what: str  # for the log: "verdict", "audit"
    write: Write


class Spool:
    def __init__(self, database: Database, max_rows: int, retry_seconds: float = 1.0) -> None:
        self._database = database
        self._max_rows = max_rows
        self._retry_seconds = retry_seconds
        self._rows: collections.deque[_Row] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._written = 0
        self._dropped = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer of waiting rows (until then they only wait)."""
        self._thread = threading.Thread(target=self._run, name="spool", daemon=True)
        self._thread.start()

    def counts(self) -> SpoolCounts:
        with self._lock:
            return SpoolCounts(len(self._rows), self._written, self._dropped)

    def submit(self, what: str, write: Write) -> bool:
        """Blocking. Write now, or keep for later; True when written now."""
        with self._lock:
            waiting = bool(self._rows)
        if not waiting:
            try:
                self._write(write)
                return True
            except Exception as error:
                if not is_unavailable(error):
                    raise
                logger.warning(
                    "database unreachable: rows are kept until it answers",
                    extra={"what": what, "error": str(error)},
                )
        self._keep(_Row(what, write))
        return False

    def stop(self) -> SpoolCounts:
        """Blocking. One last try to write what waits, then stop the writer; the counts
        as they are then (``pending`` is what is lost)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._drain()
        counts = self.counts()
        if counts.pending:
            logger.error(
                "the database is still unreachable: rows waiting for it are lost",
                extra=counts.as_dict(),
            )
        return counts

    def _keep(self, row: _Row) -> None:
        with self._lock:
            if len(self._rows) >= self._max_rows:
                self._rows.popleft()
                self._dropped += 1
                if self._dropped % DROP_LOG_EVERY == 1:
                    logger.warning(
                        "the spool is full (BIOMETRICS_SPOOL_MAX_ROWS): the oldest rows waiting "
                        "for the database are dropped",
                        extra={"max_rows": self._max_rows, "dropped": self._dropped},
                    )
            self._rows.append(row)
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._retry_seconds)
            self._wake.clear()
            if not self._stopping:
                self._drain()

    def _drain(self) -> None:
        """Write waiting rows oldest first until none is left or the database is away. The
        head stays queued while it is written, so that a new row never overtakes it."""
        written = 0
        while True:
            with self._lock:
                if not self._rows:
                    break
                row = self._rows[0]
            try:
                self._write(row.write)
            except Exception as error:
                if is_unavailable(error):
                    break
                logger.exception("a waiting row could not be written; it is dropped")
                with self._lock:
                    self._dropped += 1
            else:
                written += 1
            with self._lock:
                if self._rows and self._rows[0] is row:  # unless dropped meanwhile (full)
                    self._rows.popleft()
        if written:
            with self._lock:
                self._written += written
                pending = len(self._rows)
            logger.info(
                "rows kept during a database outage were written",
                extra={"written": written, "pending": pending},
            )

    def _write(self, write: Write) -> None:
        with self._database.session() as session:
            write(session)
