"""holds (legal holds on recordings and rooms); recordings.tombstoned_at and
media_purged_at (media retention and erasure)

Revision ID: 0016_retention
Revises: 0012_wake
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0016_retention'
down_revision = '0012_wake'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'holds',
        sa.Column('recording_id', sa.String(length=80), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('held_by', sa.Text(), nullable=False),
        sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('recording_id'),
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tombstoned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column('media_purged_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_column('media_purged_at')
        batch_op.drop_column('tombstoned_at')
    op.drop_table('holds')
