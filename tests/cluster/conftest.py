"""A Redis server for the module's tests, emptied before each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import emptied
from tests.redis_server import redis_or_skip


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("redis")
    with redis_or_skip(folder) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(postgres_url: str) -> str:
    """Replicas share PostgreSQL (SQLite is for one process): the run's database, emptied."""
    return emptied(postgres_url)
