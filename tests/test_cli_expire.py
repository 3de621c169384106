"""biometrics expire: the lifecycle sweep from the command line; --dry-run counts and
changes nothing, a real run expires, prunes and audits as cli."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import sqlalchemy as sa

from biometrics import cli
from biometrics.clock import utcnow
from biometrics.statuses import SpeakerStatus
from biometrics.store import Database, Voiceprint, queries
from biometrics.store.audit import AuditLog, AuditQuery, Origin
from biometrics.store.models import AuditRecord
from tests.conftest import TEST_CIPHER


def test_expire_dry_run_then_for_real(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'biometrics.db'}"
    monkeypatch.setenv("BIOMETRICS_DATABASE_URL", url)
    monkeypatch.setenv("BIOMETRICS_LOG_FORMAT", "console")
    monkeypatch.setenv("BIOMETRICS_SPEAKER_EXPIRY_DAYS", "30")
    database = Database(url)
    database.upgrade()
    with database.session() as session:
        for speaker_id, unused_days in (("idle", 31), ("active", 1)):
            speaker = queries.create_speaker(session, speaker_id, status=SpeakerStatus.ENROLLED)
            voiceprint = Voiceprint(model_source="m", speech_seconds=30.0, segment_count=3)
            voiceprint.seal(TEST_CIPHER, speaker_id, "0" * 64, np.eye(4, dtype=np.float32)[0])
            speaker.voiceprint = voiceprint
            speaker.last_accessed_at = utcnow() - timedelta(days=unused_days)
    AuditLog(database).record(Origin("k1"), "speaker.verify", "idle", "REJECT")
    with database.session() as session:
        session.execute(sa.update(AuditRecord).values(at=utcnow() - timedelta(days=3000)))

    assert cli.main(["expire", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == (
        "1 speaker would be expired (voiceprints deleted), 0 verdicts and 1 audit row past "
        "retention would be deleted; nothing was changed (--dry-run)"
    )
    with database.session() as session:
        assert queries.get_speaker(session, "idle").status is SpeakerStatus.ENROLLED

    assert cli.main(["expire"]) == 0
    assert capsys.readouterr().out.strip() == (
        "1 speaker expired (voiceprints deleted), 0 verdicts and 1 audit row past retention deleted"
    )
    with database.session() as session:
        idle = queries.get_speaker(session, "idle")
        assert (idle.status, idle.voiceprint) == (SpeakerStatus.EXPIRED, None)
        assert queries.get_speaker(session, "active").status is SpeakerStatus.ENROLLED
    trail = AuditLog(database).query(AuditQuery())
    assert [(row.actor, row.action, row.subject) for row in trail] == [
        ("cli", "speaker.expire", "idle")
    ]
    assert cli.main(["expire"]) == 0  # nothing left to do
    assert capsys.readouterr().out.startswith("0 speakers expired")
    database.dispose()


def test_a_negative_setting_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIOMETRICS_DATABASE_URL", f"sqlite:///{tmp_path / 'b.db'}")
    monkeypatch.setenv("BIOMETRICS_VERDICT_RETENTION_DAYS", "-1")
    assert cli.main(["expire"]) == 2
    assert "BIOMETRICS_VERDICT_RETENTION_DAYS must not be negative" in capsys.readouterr().err
