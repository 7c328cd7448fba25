"""ops: SIEM forwarding cursors

Revision ID: 0006_ops
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import guard.db

revision = '0006_ops'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_forward_cursors',
    sa.Column('destination', sa.String(length=255), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('leased_until', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('destination', 'tenant_id', name=op.f('pk_audit_forward_cursors'))
    )


def downgrade() -> None:
    op.drop_table('audit_forward_cursors')
