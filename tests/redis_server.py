"""A real ``redis-server`` for tests of the replicas' shared state (the topology's own),
skipping the test when the binary is absent (CI's ``.ci/run`` installs it)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from biometrics import topology


@contextlib.contextmanager
def redis_or_skip(folder: Path) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with topology.redis_server(folder) as url:
        yield url
