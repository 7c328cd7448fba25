"""audit proofs: merkle nodes, checkpoints, witnesses

Revision ID: 0005_audit_proofs
Revises: 0001_foundation
Create Date: 2026-11-23 15:35:22.625908
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import guard.db

revision = '0005_audit_proofs'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_checkpoints',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('tree_size', sa.Integer(), nullable=False),
    sa.Column('root_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.create_index('ix_audit_checkpoints_tenant_size', ['tenant_id', 'tree_size'], unique=False)

    op.create_table('audit_merkle_nodes',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('level', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('idx', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'level', 'idx', name=op.f('pk_audit_merkle_nodes'))
    )
    op.create_table('audit_merkle_state',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_audit_merkle_state'))
    )
    op.create_table('audit_witnesses',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('url', sa.String(length=512), nullable=False),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'url', name=op.f('pk_audit_witnesses'))
    )
    op.create_table('audit_checkpoint_receipts',
    sa.Column('checkpoint_id', sa.String(length=40), nullable=False),
    sa.Column('url', sa.String(length=512), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('response', sa.String(length=4096), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('attempted_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['audit_checkpoints.id'], name=op.f('fk_audit_checkpoint_receipts_checkpoint_id_audit_checkpoints'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('checkpoint_id', 'url', name=op.f('pk_audit_checkpoint_receipts'))
    )



def downgrade() -> None:

    op.drop_table('audit_checkpoint_receipts')
    op.drop_table('audit_witnesses')
    op.drop_table('audit_merkle_state')
    op.drop_table('audit_merkle_nodes')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_checkpoints_tenant_size')

    op.drop_table('audit_checkpoints')

