"""Voiceprints and cohorts encrypted at rest: a key id per row, and a check value per key.

The migration cannot read the service's keys, so existing vectors stay plain here, marked
by a NULL key_id; the service encrypts them when it starts, before it serves anything
(biometrics.store.vault.open_vault), and so does `biometrics keys rotate-voiceprints`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "encryption_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("check_value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    for table in ("voiceprints", "score_cohorts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))


def downgrade() -> None:
    # Sealed vectors cannot be turned back into plain ones here (that needs the key):
    # refuse rather than leave rows that the older schema would read as floats.
    connection = op.get_bind()
    for table in ("voiceprints", "score_cohorts"):
        sealed = connection.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE key_id IS NOT NULL")
        ).scalar()
        if sealed:
            raise RuntimeError(
                f"{table} holds {sealed} encrypted rows: downgrading past 0006 would leave "
                "them unreadable; delete them first or stay at 0006"
            )
    for table in ("voiceprints", "score_cohorts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("key_id")
    op.drop_table("encryption_keys")
