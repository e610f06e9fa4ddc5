"""CSS recording files

Revision ID: 0002_css
Revises: 0001
Create Date: 2026-11-21 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002_css'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('css_files',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('recording_id', sa.String(length=80), nullable=False),
    sa.Column('stream_key', sa.String(length=16), nullable=False),
    sa.Column('appid', sa.BigInteger(), nullable=False),
    sa.Column('stream_id', sa.Text(), nullable=False),
    sa.Column('file_id', sa.String(length=256), nullable=False),
    sa.Column('file_format', sa.String(length=8), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=False),
    sa.Column('end_time', sa.BigInteger(), nullable=False),
    sa.Column('duration', sa.BigInteger(), nullable=False),
    sa.Column('file_size', sa.BigInteger(), nullable=True),
    sa.Column('video_url', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('appid', 'file_id', name='uq_css_files_appid_file')
    )
    with op.batch_alter_table('css_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_css_files_file_id'), ['file_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_css_files_recording_id'), ['recording_id'], unique=False)
        batch_op.create_index('ix_css_files_stream_time', ['stream_key', 'start_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_css_files_stream_id'), ['stream_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('css_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_css_files_stream_id'))
        batch_op.drop_index('ix_css_files_stream_time')
        batch_op.drop_index(batch_op.f('ix_css_files_recording_id'))
        batch_op.drop_index(batch_op.f('ix_css_files_file_id'))

    op.drop_table('css_files')
