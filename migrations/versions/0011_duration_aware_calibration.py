"""Duration-aware score calibrations: a stored calibration's format, and from format 2 its
duration model. Rows stored before are format 1 (the duration-blind logistic map).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("score_calibrations") as calibrations:
        calibrations.add_column(
            sa.Column("format", sa.Integer(), nullable=False, server_default="1")
        )
        calibrations.add_column(sa.Column("duration", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A format 2 row read as format 1 would score without its duration model, wrongly at
    # every length but the reference: drop such rows, leaving the shipped calibration.
    op.execute("DELETE FROM score_calibrations WHERE format <> 1")
    with op.batch_alter_table("score_calibrations") as calibrations:
        calibrations.drop_column("duration")
        calibrations.drop_column("format")
