"""runs.requeues: a queued run's re-sends after its message was lost, to bound them

Revision ID: 0011_requeues
Revises: 0010_soak
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011_requeues'
down_revision = '0010_soak'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs stored before this revision count as never sent again.
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('requeues', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('requeues')
