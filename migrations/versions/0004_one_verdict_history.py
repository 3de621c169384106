"""One verdict history for REST and live calls; speaker expiry; a call's audio format.

``verdicts`` replaces ``verification_records`` (REST) and ``call_verdicts`` (live calls):
their rows are copied over and the old tables dropped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("verdict_id", sa.String(36), nullable=False, unique=True),
        sa.Column("speaker_id", sa.String(128), nullable=True),
        sa.Column("call_id", sa.String(256), nullable=True),
        sa.Column("participant_raw_id", sa.String(256), nullable=True),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("normalized_score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("calibrated", sa.Boolean(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=True),
        _timestamp("first_audio_at", nullable=True),
        _timestamp("last_audio_at", nullable=True),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("model_source", sa.String(512), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(512), nullable=True),
        _timestamp("created_at"),
    )
    op.create_index("ix_verdicts_speaker_id", "verdicts", ["speaker_id"])
    op.create_index("ix_verdicts_created_at", "verdicts", ["created_at"])
    op.create_index("ix_verdicts_call", "verdicts", ["call_id", "participant_raw_id"])

    # REST verifications had no verdict id: they get "rest-<old row id>", unique and stable.
    op.execute(
        "INSERT INTO verdicts (verdict_id, speaker_id, decision, score, similarity, threshold, "
        "calibrated, speech_seconds, final, model_source, model_sha256, created_at) "
        "SELECT 'rest-' || v.id, s.speaker_id, v.decision, v.score, v.similarity, v.threshold, "
        "false, v.speech_seconds, true, v.model_source, v.model_sha256, v.created_at "
        "FROM verification_records v JOIN speakers s ON s.id = v.speaker_pk ORDER BY v.id"
    )
    op.execute(
        "INSERT INTO verdicts (verdict_id, speaker_id, call_id, participant_raw_id, decision, "
        "score, similarity, normalized_score, threshold, calibrated, speech_seconds, "
        "first_audio_at, last_audio_at, final, model_source, model_sha256, detail, created_at) "
        "SELECT v.verdict_id, v.speaker_id, c.call_id, p.raw_id, v.decision, v.score, "
        "v.similarity, v.normalized_score, v.threshold, v.calibrated, v.speech_seconds, "
        "v.first_audio_at, v.last_audio_at, v.final, v.model_source, v.model_sha256, v.detail, "
        "v.created_at FROM call_verdicts v "
        "JOIN call_participants p ON p.id = v.participant_pk JOIN calls c ON c.id = p.call_pk "
        "ORDER BY v.id"
    )
    op.drop_table("call_verdicts")
    op.drop_table("verification_records")
    with op.batch_alter_table("speakers") as speakers:
        speakers.add_column(_timestamp("expires_at", nullable=True))
    with op.batch_alter_table("calls") as calls:
        calls.add_column(sa.Column("audio_format", sa.JSON(), nullable=True))
    with op.batch_alter_table("call_participants") as participants:
        participants.add_column(
            sa.Column("mixed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Before this revision mixed audio was the participant named "mixed".
    op.execute("UPDATE call_participants SET mixed = true WHERE raw_id = 'mixed'")


def downgrade() -> None:
    with op.batch_alter_table("call_participants") as participants:
        participants.drop_column("mixed")
    with op.batch_alter_table("calls") as calls:
        calls.drop_column("audio_format")
    with op.batch_alter_table("speakers") as speakers:
        speakers.drop_column("expires_at")
    op.create_table(
        "verification_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "speaker_pk",
            sa.Integer(),
            sa.ForeignKey("speakers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model_source", sa.String(512), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        _timestamp("created_at"),
    )
    op.create_index("ix_verification_records_speaker_pk", "verification_records", ["speaker_pk"])
    op.create_index("ix_verification_records_created_at", "verification_records", ["created_at"])
    op.create_table(
        "call_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("verdict_id", sa.String(36), nullable=False, unique=True),
        sa.Column(
            "participant_pk",
            sa.Integer(),
            sa.ForeignKey("call_participants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("speaker_id", sa.String(128), nullable=True),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("normalized_score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("calibrated", sa.Boolean(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        _timestamp("first_audio_at", nullable=True),
        _timestamp("last_audio_at", nullable=True),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("model_source", sa.String(512), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(512), nullable=True),
        _timestamp("created_at"),
    )
    op.create_index("ix_call_verdicts_participant_pk", "call_verdicts", ["participant_pk"])
    # What the old tables can hold goes back: REST verdicts with a threshold on an existing
    # speaker, and call verdicts whose participant row exists.
    op.execute(
        "INSERT INTO verification_records (speaker_pk, model_source, model_sha256, decision, "
        "score, similarity, threshold, speech_seconds, created_at) "
        "SELECT s.id, v.model_source, v.model_sha256, v.decision, v.score, v.similarity, "
        "v.threshold, v.speech_seconds, v.created_at FROM verdicts v "
        "JOIN speakers s ON s.speaker_id = v.speaker_id "
        "WHERE v.call_id IS NULL AND v.threshold IS NOT NULL ORDER BY v.id"
    )
    op.execute(
        "INSERT INTO call_verdicts (verdict_id, participant_pk, speaker_id, decision, score, "
        "similarity, normalized_score, threshold, calibrated, speech_seconds, first_audio_at, "
        "last_audio_at, final, model_source, model_sha256, detail, created_at) "
        "SELECT v.verdict_id, p.id, v.speaker_id, v.decision, v.score, v.similarity, "
        "v.normalized_score, v.threshold, v.calibrated, v.speech_seconds, v.first_audio_at, "
        "v.last_audio_at, v.final, v.model_source, v.model_sha256, v.detail, v.created_at "
        "FROM verdicts v JOIN calls c ON c.call_id = v.call_id "
        "JOIN call_participants p ON p.call_pk = c.id AND p.raw_id = v.participant_raw_id "
        "ORDER BY v.id"
    )
    op.drop_table("verdicts")
