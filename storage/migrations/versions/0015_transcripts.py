"""transcripts, transcript_lines (searchable: pg_trgm or FTS5 trigram), transcript_flags

Revision ID: 0015_transcripts
Revises: 0014_sessions
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0015_transcripts'
down_revision = '0014_sessions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'transcripts',
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('recording_id', sa.String(length=80), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('engine', sa.String(length=16), nullable=True),
        sa.Column('language', sa.String(length=8), nullable=True),
        sa.Column('json_url', sa.Text(), nullable=True),
        sa.Column('vtt_url', sa.Text(), nullable=True),
        sa.Column('summary', sa.JSON(), nullable=False),
        sa.Column('document', sa.JSON(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id'),
    )
    op.create_index('ix_transcripts_recording_id', 'transcripts', ['recording_id'])
    op.create_index('ix_transcripts_state_dispatched', 'transcripts', ['state', 'dispatched_at'])

    op.create_table(
        'transcript_lines',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('recording_id', sa.String(length=80), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('speaker', sa.Text(), nullable=False),
        sa.Column('start_s', sa.Float(), nullable=False),
        sa.Column('end_s', sa.Float(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_transcript_lines_recording_id', 'transcript_lines', ['recording_id'])

    op.create_table(
        'transcript_flags',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('recording_id', sa.String(length=80), nullable=False),
        sa.Column('run_id', sa.String(length=36), nullable=False),
        sa.Column('speaker', sa.Text(), nullable=False),
        sa.Column('start_s', sa.Float(), nullable=False),
        sa.Column('end_s', sa.Float(), nullable=False),
        sa.Column('match', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reviewed_by', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_transcript_flags_recording_id', 'transcript_flags', ['recording_id'])
    op.create_index('ix_transcript_flags_reviewed_at', 'transcript_flags', ['reviewed_at'])

    # Search over text written without spaces (Korean, Japanese, Chinese) as well as
    # English: trigrams, not words.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.execute(
            'CREATE INDEX ix_transcript_lines_text_trgm ON transcript_lines '
            'USING gin (text gin_trgm_ops)'
        )
    else:
        op.execute(
            "CREATE VIRTUAL TABLE transcript_lines_fts USING fts5("
            "text, content='transcript_lines', content_rowid='id', tokenize='trigram')"
        )
        op.execute(
            'CREATE TRIGGER transcript_lines_ai AFTER INSERT ON transcript_lines BEGIN '
            'INSERT INTO transcript_lines_fts(rowid, text) VALUES (new.id, new.text); END'
        )
        op.execute(
            'CREATE TRIGGER transcript_lines_ad AFTER DELETE ON transcript_lines BEGIN '
            "INSERT INTO transcript_lines_fts(transcript_lines_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_transcript_lines_text_trgm')
    else:
        op.execute('DROP TRIGGER IF EXISTS transcript_lines_ad')
        op.execute('DROP TRIGGER IF EXISTS transcript_lines_ai')
        op.execute('DROP TABLE IF EXISTS transcript_lines_fts')
    op.drop_table('transcript_flags')
    op.drop_table('transcript_lines')
    op.drop_table('transcripts')
