"""Live calls: call summaries, their participants' progress and claims, and verdict history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(256), nullable=False, unique=True),
        sa.Column("correlation_id", sa.String(256), nullable=True),
        sa.Column("subscription_id", sa.String(256), nullable=True),
        sa.Column(
            "status",
            sa.Enum("PENDING", "ONGOING", "ENDED", name="callstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("sockets", sa.Integer(), nullable=False),
        sa.Column("counters", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("ended_at", nullable=True),
        _timestamp("updated_at"),
    )
    op.create_table(
        "call_participants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "call_pk",
            sa.Integer(),
            sa.ForeignKey("calls.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("raw_id", sa.String(256), nullable=False),
        _timestamp("joined_at", nullable=True),
        _timestamp("first_frame_at", nullable=True),
        _timestamp("last_frame_at", nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        sa.Column("claimed_speaker_id", sa.String(128), nullable=True),
        sa.Column("claim_threshold", sa.Float(), nullable=True),
        sa.Column("claim_source", sa.String(16), nullable=True),
        sa.Column("enrollment", sa.JSON(), nullable=True),
        sa.Column("latest_decision", sa.String(32), nullable=True),
        _timestamp("updated_at"),
        sa.UniqueConstraint("call_pk", "raw_id"),
    )
    op.create_index("ix_call_participants_call_pk", "call_participants", ["call_pk"])
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


def downgrade() -> None:
    op.drop_table("call_verdicts")
    op.drop_table("call_participants")
    op.drop_table("calls")
