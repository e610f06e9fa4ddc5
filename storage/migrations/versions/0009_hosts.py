"""runs.takeovers: a run's takeovers from lost workers, apart from its task's retries

Revision ID: 0009_hosts
Revises: 0008_indexes
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009_hosts'
down_revision = '0008_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs stored before this revision count as never taken over.
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('takeovers', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('takeovers')
