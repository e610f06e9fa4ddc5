"""callbacks.received_at and delivery_attempts.at indexed: the retention job's old rows

Revision ID: 0010_soak
Revises: 0009_hosts
Create Date: 2026-11-30 20:30:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0010_soak'
down_revision = '0009_hosts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_callbacks_received_at', 'callbacks', ['received_at'], unique=False)
    op.create_index('ix_delivery_attempts_at', 'delivery_attempts', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_delivery_attempts_at', table_name='delivery_attempts')
    op.drop_index('ix_callbacks_received_at', table_name='callbacks')
