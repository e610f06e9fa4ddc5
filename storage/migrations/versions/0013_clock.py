"""recordings.settle_wake_at goes: beat's clock reads the settle time alone

Every collecting recording whose `settle_due_at` has come is found by the leased beat
about once a second, over `ix_recordings_state_due` (state, settle_due_at), which the
initial schema made; no settle task is timed by the webhook any more, so there is no
pending task's wake to record.

Revision ID: 0013_clock
Revises: 0016_retention
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0013_clock'
down_revision = '0016_retention'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_column('settle_wake_at')


def downgrade() -> None:
    # No wake recorded: under the older code the next event hands out a settle task, as
    # for a new recording.
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settle_wake_at', sa.DateTime(timezone=True), nullable=True))
