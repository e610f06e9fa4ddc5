"""recordings.settle_wake_at: when the earliest pending settle task of a recording looks

Revision ID: 0012_wake
Revises: 0011_requeues
Create Date: 2026-12-03 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012_wake'
down_revision = '0011_requeues'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Recordings stored before this revision have no wake recorded: their next event hands
    # out a settle task, as for a new recording.
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settle_wake_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_column('settle_wake_at')
