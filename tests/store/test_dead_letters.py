"""The webhook dead-letter store (biometrics.store.dead_letters), on SQLite and PostgreSQL:
rows go in whole batches, come out oldest first and filtered, and a re-sent letter updates
its own row."""

from __future__ import annotations

import dataclasses
import json

from biometrics.clock import utcnow
from biometrics.store import Database
from biometrics.store.dead_letters import (
    DeadLetterQuery,
    DeadLetters,
    Redelivered,
    Undelivered,
)


def undelivered(event_id: str, url: str = "https://a.example/hooks", call_id: str = "c1"):
    body = json.dumps({"id": event_id, "data": {"decision": "ACCEPT"}})
    return Undelivered(
        url, event_id, "verdict.changed", call_id, body, 6, "out_of_attempts", 503, "x" * 900,
        utcnow(),
    )  # fmt: skip


def test_letters_are_stored_filtered_and_updated_by_a_resend(database_url):
    database = Database(database_url)
    store = DeadLetters(database)
    store.save([undelivered("e1"), undelivered("e2", call_id="c2")])
    store.save([undelivered("e3", url="https://b.example/hooks")])
    every = store.query(DeadLetterQuery())
    assert [row.event_id for row in every] == ["e1", "e2", "e3"]
    assert len(every[0].problem) == 512  # cut to the column
    assert [r.event_id for r in store.query(DeadLetterQuery(call_id="c2"))] == ["e2"]
    assert [r.event_id for r in store.query(DeadLetterQuery(url="https://b.example/hooks"))] == [
        "e3"
    ]
    assert [r.event_id for r in store.query(DeadLetterQuery(after=every[0].id, limit=1))] == ["e2"]

    first = every[0]
    assert store.mark_retried(first.id, utcnow()).retried_at is not None
    again = dataclasses.replace(
        undelivered("e1"), attempts=2, reason="refused", last_status=410, dead_letter_id=first.id
    )
    store.save([again, Redelivered(every[1].id, utcnow())])
    row = store.get(first.id)
    assert (row.attempts, row.reason, row.last_status, row.delivered_at) == (
        2,
        "refused",
        410,
        None,
    )
    assert len(store.query(DeadLetterQuery())) == 3  # updated, not added
    assert [r.event_id for r in store.query(DeadLetterQuery(delivered=True))] == ["e2"]
    assert [r.event_id for r in store.query(DeadLetterQuery(delivered=False))] == ["e1", "e3"]
    shown = store.get(every[1].id).as_dict()
    assert shown["event"]["data"] == {"decision": "ACCEPT"} and "body" not in shown
    assert shown["delivered_at"].endswith("Z")
    assert store.get(10_000) is None and store.mark_retried(10_000, utcnow()) is None
    database.dispose()
