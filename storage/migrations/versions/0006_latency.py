"""segments.events and recordings.stopped_at: the short settle window and explicit stop

Revision ID: 0006_latency
Revises: 0005_console
Create Date: 2026-11-30 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006_latency'
down_revision = '0005_console'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Segments stored before this revision count as not whole (events 0): their
    # recordings keep the long settle window, as before.
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('events', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_column('stopped_at')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_column('events')
