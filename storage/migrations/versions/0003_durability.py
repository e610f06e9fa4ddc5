"""runs.notified_at: finished runs whose notifications were never created are found again

Revision ID: 0003_durability
Revises: 0002_css
Create Date: 2026-11-21 05:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003_durability'
down_revision = '0002_css'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_notified_at'), ['notified_at'], unique=False)
    # Runs finished before this revision were notified (or had nowhere to notify).
    op.execute(
        "UPDATE runs SET notified_at = finished_at "
        "WHERE state IN ('archived', 'failed') AND notified_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_notified_at'))
        batch_op.drop_column('notified_at')
