"""rooms: the members of each room (a room is a recording of source 'room')

Revision ID: 0004_rooms
Revises: 0003_durability
Create Date: 2026-11-30 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004_rooms'
down_revision = '0003_durability'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('room_members',
    sa.Column('room_id', sa.String(length=80), nullable=False),
    sa.Column('recording_id', sa.String(length=80), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=False),
    sa.Column('seen_state', sa.String(length=16), nullable=False),
    sa.Column('seen_revision', sa.Integer(), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('room_id', 'recording_id')
    )
    with op.batch_alter_table('room_members', schema=None) as batch_op:
        batch_op.create_index('ix_room_members_recording', ['recording_id'], unique=False)
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index('ix_recordings_room', ['biz_id', 'room_id', 'task_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index('ix_recordings_room')
    with op.batch_alter_table('room_members', schema=None) as batch_op:
        batch_op.drop_index('ix_room_members_recording')
    op.drop_table('room_members')
