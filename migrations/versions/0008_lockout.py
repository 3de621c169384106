"""When an admin last cleared a speaker's lockout after failed verifications.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("speakers") as speakers:
        speakers.add_column(sa.Column("lockout_cleared_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("speakers") as speakers:
        speakers.drop_column("lockout_cleared_at")
