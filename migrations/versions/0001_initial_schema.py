"""Speakers, their aliases and voiceprints, enrollment and verification records.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _speaker_fk() -> sa.Column:
    return sa.Column(
        "speaker_pk",
        sa.Integer(),
        sa.ForeignKey("speakers.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "speakers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("speaker_id", sa.String(128), nullable=False, unique=True),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING_ENROLLMENT",
                "ENROLLED",
                "OPTED_OUT",
                name="speakerstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("last_accessed_at", nullable=True),
    )
    op.create_table(
        "speaker_aliases",
        sa.Column("id", sa.Integer(), primary_key=True),
        _speaker_fk(),
        sa.Column("alias", sa.String(256), nullable=False, unique=True),
    )
    op.create_index("ix_speaker_aliases_speaker_pk", "speaker_aliases", ["speaker_pk"])
    op.create_table(
        "voiceprints",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "speaker_pk",
            sa.Integer(),
            sa.ForeignKey("speakers.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("model_source", sa.String(512), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
    )
    op.create_table(
        "enrollment_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        _speaker_fk(),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("speech_seconds", sa.Float(), nullable=False),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        sa.Column("replaced_previous", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
    )
    op.create_index("ix_enrollment_records_speaker_pk", "enrollment_records", ["speaker_pk"])
    op.create_table(
        "verification_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        _speaker_fk(),
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


def downgrade() -> None:
    op.drop_table("verification_records")
    op.drop_table("enrollment_records")
    op.drop_table("voiceprints")
    op.drop_table("speaker_aliases")
    op.drop_table("speakers")
