"""A real ``redis-server`` for tests of the replicas' shared state (the benchmarks' own),
skipping the test when the binary is absent (CI's ``.ci/run`` installs it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import RedisMissing, running_redis


@contextlib.contextmanager
def redis_or_skip(folder: Path) -> Iterator[str]:
    try:
        with running_redis(folder) as url:
            yield url
    except RedisMissing as missing:
        pytest.skip(str(missing))
