"""Shared fixtures: a model folder the tests build themselves, databases (SQLite and
a real PostgreSQL), the application in-process, and a real uvicorn server."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis.internal.conjecture import providers as hypothesis_providers
from speechbrain.utils.importutils import LazyModule
from starlette.testclient import TestClient

from benchmarks.common import running_server
from biometrics.app import create_app
from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.crypto import Cipher, Key, KeyRing
from biometrics.store.keys import KeyStore
from biometrics.store.models import Base
from biometrics.training.folders import ecapa_hyperparams, write_initialised_folder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LIBRISPEECH = SHARED / "data" / "librispeech"
PRODUCTION_LAYOUT = SHARED / "models" / "spkrec-ecapa-voxceleb-layout"
POSTGRES_ADMIN_URL = os.environ.get(
    "BIOMETRICS_TEST_POSTGRES_URL",
    "postgresql+psycopg://biometrics_test:biometrics_test@127.0.0.1:5432/postgres",
)

# One fixed voiceprint key for the tests (the quick-start key file has tests of its own):
# what a test writes with TEST_CIPHER, an application built from `settings` reads.
TEST_CIPHER = Cipher(KeyRing(Key.of(bytes(range(32)))))
TEST_ENCRYPTION_KEY = TEST_CIPHER.keyring.current.encoded()

# No test may reach the network for model weights.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hide_lazy_modules() -> None:
    """Hypothesis reads constants out of every imported module, asking each for its
    ``__file__``; SpeechBrain's lazy modules answer by importing optional integrations (k2,
    ...) that are not installed, and raise. Marking them as read keeps Hypothesis from
    asking them."""
    lazy = [module for module in list(sys.modules.values()) if isinstance(module, LazyModule)]
    hypothesis_providers._seen_modules.update(id(module) for module in lazy)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems() -> None:
    hide_lazy_modules()  # before Hypothesis's own hook reads the modules


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; keep that from leaking into later tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-init ECAPA in the exact spkrec-ecapa-voxceleb layout."""
    return write_small_model(tmp_path_factory.mktemp("model") / "ecapa-small")


def write_small_model(folder: Path) -> Path:
    return write_initialised_folder(folder, ecapa_hyperparams(channels=64, n_classes=8), seed=0)


@pytest.fixture(scope="session")
def encoder(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> SpeakerEncoder:
    return load_encoder(str(model_folder), tmp_path_factory.mktemp("cache"), threads=2)


@pytest.fixture(scope="session")
def production_shaped_folder(tmp_path_factory) -> Path:
    """The production model's exact small files with random weights of the right shapes."""
    if not PRODUCTION_LAYOUT.is_dir():
        pytest.skip("shared spkrec-ecapa-voxceleb layout absent")
    folder = tmp_path_factory.mktemp("production") / "spkrec-ecapa-voxceleb"
    return write_initialised_folder(
        folder,
        (PRODUCTION_LAYOUT / "hyperparams.yaml").read_text(),
        label_encoder=(PRODUCTION_LAYOUT / "label_encoder.txt").read_text(),
        mean_var_norm_emb=(PRODUCTION_LAYOUT / "mean_var_norm_emb.ckpt").read_bytes(),
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as error:
        admin.dispose()
        reason = f"PostgreSQL unreachable at {admin.url.render_as_string()}: {error.orig}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason + " (set BIOMETRICS_TEST_POSTGRES_URL; CI requires it)")
    name = f"biometrics_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    Database(url).upgrade()
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a fresh SQLite file, or the run's PostgreSQL
    database emptied before the test."""
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path)
    return emptied(request.getfixturevalue("postgres_url"))


def emptied(url: str) -> str:
    """``url``, its database's tables emptied."""
    database = Database(url)
    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())
    database.dispose()
    return url


def migrated_sqlite(folder: Path) -> str:
    """The URL of a new, migrated SQLite database in ``folder``."""
    url = f"sqlite:///{folder / 'biometrics.db'}"
    Database(url).upgrade()
    return url


@pytest.fixture
def settings(database_url: str, model_folder: Path, tmp_path: Path) -> Settings:
    return settings_for(database_url, model_folder, tmp_path)


def settings_for(database_url: str, model_folder: Path, folder: Path) -> Settings:
    """The tests' settings: short speech minimums, small limits, the test voiceprint key
    (also what scripts/fuzz.py serves)."""
    return Settings(
        database_url=database_url,
        model_source=str(model_folder),
        model_cache_dir=folder / "cache",
        auto_migrate=False,
        min_enroll_speech_seconds=8.0,
        min_verify_speech_seconds=2.0,
        max_upload_bytes=4 * 1024 * 1024,
        max_audio_seconds=60.0,
        encryption_key=TEST_ENCRYPTION_KEY,
    )


def admin_key_for(database_url: str) -> str:
    """A new admin API key in the database: every /v1 route needs one by default."""
    database = Database(database_url)
    try:
        return KeyStore(database).create(Role.ADMIN, "tests")[1]
    finally:
        database.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin_key(settings: Settings) -> str:
    return admin_key_for(settings.database_url)


@pytest.fixture
def client(settings: Settings, encoder: SpeakerEncoder, admin_key: str) -> Iterator[TestClient]:
    app = create_app(settings, encoder=encoder)
    with TestClient(app, headers=bearer(admin_key)) as test_client:
        yield test_client


@dataclasses.dataclass
class LiveServer:
    url: str
    settings: Settings
    api_key: str  # an admin key

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.api_key)


@pytest.fixture
def live_server(
    settings: Settings, encoder: SpeakerEncoder, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    """The application on a real uvicorn server on loopback, and an admin key for it (also
    in ``BIOMETRICS_API_KEY``, where the client commands look for one)."""
    monkeypatch.setenv("BIOMETRICS_API_KEY", admin_key)
    with running_server(create_app(settings, encoder=encoder)) as url:
        yield LiveServer(url=url, settings=settings, api_key=admin_key)
