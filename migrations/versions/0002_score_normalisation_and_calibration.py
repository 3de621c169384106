"""Score cohorts (AS-norm) and score calibrations, one of each per model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "score_cohorts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("vectors", sa.LargeBinary(), nullable=False),
        sa.Column("top_n", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "score_calibrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("slope", sa.Float(), nullable=False),
        sa.Column("intercept", sa.Float(), nullable=False),
        sa.Column("normalized", sa.Boolean(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("eer", sa.Float(), nullable=False),
        sa.Column("target_trials", sa.Integer(), nullable=False),
        sa.Column("nontarget_trials", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("score_calibrations")
    op.drop_table("score_cohorts")
