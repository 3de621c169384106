"""biometrics.store.verdicts: one history for uploaded and live verdicts, read back exactly,
and each verdict marks its speaker as used, on SQLite and PostgreSQL."""

from __future__ import annotations

from biometrics.statuses import Decision
from biometrics.store import Database, queries
from biometrics.store.verdicts import VerdictHistory
from tests.store.verdicts import verdict


def test_live_and_uploaded_verdicts_share_one_history(database_url):
    database = Database(database_url)
    history = VerdictHistory(database)
    live = [verdict(1, Decision.NOT_ENOUGH_SPEECH), verdict(2), verdict(3, final=True)]
    upload = verdict(4, raw_id=None, final=True)
    other = verdict(5, raw_id="8:acs:agent", speaker_id=None, decision=Decision.REJECT)
    for each in [*live, upload, other]:
        history.record(each)
    try:
        assert history.of_participant("call-1", "4:+14255550123", 10) == live
        assert history.of_participant("call-1", "4:+14255550123", 1) == live[2:]
        assert history.of_participant("call-1", "nobody", 10) == []
        assert history.of_speaker("alice", 10) == [upload, *reversed(live)]
    finally:
        database.dispose()


def test_a_verdict_marks_its_speaker_as_used(database_url):
    database = Database(database_url)
    with database.session() as session:
        queries.create_speaker(session, "alice")
    history = VerdictHistory(database)
    try:
        history.record(verdict(1, raw_id=None))
        history.record(verdict(2, speaker_id="nobody-by-that-name"))  # no speaker: no error
        with database.session() as session:
            used = queries.get_speaker(session, "alice").last_accessed_at
        assert used is not None and used >= verdict(1).created_at
    finally:
        database.dispose()
