"""notifications.state indexed: the metrics scrape counts notifications by state, and the
sweep and `recpipe redeliver --all-failed` select them by state

Revision ID: 0008_indexes
Revises: 0007_faults
Create Date: 2026-11-30 20:25:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0008_indexes'
down_revision = '0007_faults'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_notifications_state', 'notifications', ['state'])


def downgrade() -> None:
    op.drop_index('ix_notifications_state', table_name='notifications')
