"""The database handle: one engine, its sessions, migrations and a liveness probe."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

from biometrics.errors import BiometricsError, ConfigError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# How long a client should wait before trying again while the database is unreachable.
RETRY_AFTER_SECONDS = 5.0
# A PostgreSQL server that does not answer (a dropped route, not a refused port) fails a
# connection attempt after this long instead of holding the request for minutes.
CONNECT_TIMEOUT_SECONDS = 5


class DatabaseUnavailable(BiometricsError):
    """The database cannot be reached now; the request may be retried later."""

    code = "database_unavailable"
    status_code = 503

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            detail or "the database is unreachable; try again shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached (refused, dropped, timed out,
    a SQLite file that cannot be opened or stays locked), as opposed to a statement the
    database refused (a constraint, a bad query): only the first is worth retrying."""
    if isinstance(error, DatabaseUnavailable | exc.TimeoutError):  # the pool's timeout
        return True
    if isinstance(error, exc.OperationalError):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        """Apply pending Alembic migrations."""
        command.upgrade(alembic_config(self.url), "head")
        logger.info(
            "database schema is current", extra={"database": self.engine.url.render_as_string()}
        )

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.is_file():
        raise ConfigError(
            f"migrations not found at {PROJECT_ROOT}: run biometrics from a checkout of the "
            "project (pip install -e .)"
        )
    config = Config(str(ini))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # Keep the application's logging as it is configured.
    config.attributes["configure_logger"] = False
    return config


def _create_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        connect_args = {}
        if url.startswith("postgresql") and "connect_timeout=" not in url:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except Exception as error:  # bad URL, missing driver
        raise ConfigError(f"BIOMETRICS_DATABASE_URL is not usable: {error}") from None


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
