"""Generated requests come by the thousand from one key: no rate limit here (it has tests of
its own in tests/api/test_auth.py)."""

from __future__ import annotations

import dataclasses

import pytest

from biometrics.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, rate_limit_per_minute=0)
