"""Call recordings: the index of each participant's sealed audio files, and the calls an
admin chose to record (or not).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_recordings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recording_id", sa.String(36), nullable=False, unique=True),
        sa.Column("call_id", sa.String(256), nullable=False),
        sa.Column("participant_raw_id", sa.String(256), nullable=False),
        sa.Column("speaker_id", sa.String(128), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raw_bytes", sa.Integer(), nullable=False),
        sa.Column("wav_bytes", sa.Integer(), nullable=False),
        sa.Column("dropped_bytes", sa.Integer(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("problem", sa.String(512), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_call_recordings_call", "call_recordings", ["call_id", "participant_raw_id"])
    op.create_index("ix_call_recordings_speaker_id", "call_recordings", ["speaker_id"])
    op.create_index("ix_call_recordings_started_at", "call_recordings", ["started_at"])
    op.create_table(
        "call_recording_settings",
        sa.Column("call_id", sa.String(256), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("call_recording_settings")
    op.drop_table("call_recordings")
