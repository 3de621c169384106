"""Fixtures for tests that run the service as it ships: the bundled model and the default
settings (on the test's database, with the test encryption key). A test module imports
them to use them instead of the small random-weight model of tests/conftest.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from tests.conftest import TEST_ENCRYPTION_KEY


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> SpeakerEncoder:
    return load_encoder("bundled", tmp_path_factory.mktemp("cache"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The defaults; a test parametrized indirectly on ``settings`` names the live
    embedding (BIOMETRICS_LIVE_EMBEDDING) to run with instead."""
    shipped = Settings(
        database_url=database_url,
        model_cache_dir=tmp_path,
        auto_migrate=False,
        encryption_key=TEST_ENCRYPTION_KEY,
    )
    if not hasattr(request, "param"):
        return shipped
    return dataclasses.replace(shipped, live_embedding=request.param)
