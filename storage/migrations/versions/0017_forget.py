"""erasures and erasure_items (a player's erasure, `recpipe forget`); notifications of an
erasure (`player.forgotten`): run_id nullable, erasure_id

Revision ID: 0017_forget
Revises: 0015_transcripts
Create Date: 2026-12-07 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0017_forget'
down_revision = '0015_transcripts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'erasures',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('player', sa.String(length=40), nullable=False),
        sa.Column('biz_id', sa.BigInteger(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.Text(), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('report', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('erasures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_erasures_player'), ['player'], unique=False)
        batch_op.create_index(batch_op.f('ix_erasures_state'), ['state'], unique=False)
    op.create_table(
        'erasure_items',
        sa.Column('erasure_id', sa.Integer(), nullable=False),
        sa.Column('recording_id', sa.String(length=80), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('base_revision', sa.Integer(), nullable=False),
        sa.Column('objects', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['erasure_id'], ['erasures.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('erasure_id', 'recording_id'),
    )
    with op.batch_alter_table('erasure_items', schema=None) as batch_op:
        batch_op.create_index('ix_erasure_items_recording', ['recording_id'], unique=False)
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.alter_column('run_id', existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column('erasure_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_notifications_erasure_id'), ['erasure_id'],
                              unique=False)
        batch_op.create_foreign_key('fk_notifications_erasure_id', 'erasures', ['erasure_id'],
                                    ['id'], ondelete='CASCADE')
        batch_op.create_unique_constraint('uq_notifications_erasure_url_webhook',
                                          ['erasure_id', 'url', 'webhook_id'])


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE run_id IS NULL")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint('uq_notifications_erasure_url_webhook', type_='unique')
        batch_op.drop_constraint('fk_notifications_erasure_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_notifications_erasure_id'))
        batch_op.drop_column('erasure_id')
        batch_op.alter_column('run_id', existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table('erasure_items', schema=None) as batch_op:
        batch_op.drop_index('ix_erasure_items_recording')
    op.drop_table('erasure_items')
    with op.batch_alter_table('erasures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_erasures_state'))
        batch_op.drop_index(batch_op.f('ix_erasures_player'))
    op.drop_table('erasures')
