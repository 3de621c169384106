"""Generated requests come by the thousand from one key: no rate limit here (it has tests of
its own in tests/api/test_auth.py). Hypothesis reads every module again when new ones were
imported: SpeechBrain's lazy ones are hidden from it before each test (tests/conftest.py)."""

from __future__ import annotations

import dataclasses

import pytest

from biometrics.config import Settings
from tests.conftest import hide_lazy_modules


@pytest.fixture(autouse=True)
def _hide_lazy_modules() -> None:
    hide_lazy_modules()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, rate_limit_per_minute=0)
