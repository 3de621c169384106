"""A webhook receiver on loopback, and the dead-letter store of the test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from biometrics.store import Database
from biometrics.store.dead_letters import DeadLetters
from tests.events.receiver import WebhookReceiver
from tests.events.senders import SECRET


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET).running() as running:
        yield running


@pytest.fixture
def dead_letters(database_url: str) -> Iterator[DeadLetters]:
    database = Database(database_url)
    yield DeadLetters(database)
    database.dispose()
