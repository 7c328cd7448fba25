"""vault: wrapped DEKs and encrypted cards (no PAN or CVC column exists in clear)

Revision ID: 0002_vault
Revises: 0001_foundation
Create Date: 2026-11-23 15:32:58.050337
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import guard.db

revision = '0002_vault'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vault_deks',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('kek_provider', sa.String(length=32), nullable=False),
    sa.Column('kek_version', sa.Integer(), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_vault_deks_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vault_deks')),
    sa.UniqueConstraint('tenant_id', 'version', name=op.f('uq_vault_deks_tenant_id_version'))
    )
    with op.batch_alter_table('vault_deks', schema=None) as batch_op:
        batch_op.create_index('ix_vault_deks_tenant_state', ['tenant_id', 'state'], unique=False)

    op.create_table('vault_cards',
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('brand', sa.String(length=16), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('bin', sa.String(length=6), nullable=True),
    sa.Column('pan_length', sa.SmallInteger(), nullable=False),
    sa.Column('exp_month', sa.SmallInteger(), nullable=False),
    sa.Column('exp_year', sa.SmallInteger(), nullable=False),
    sa.Column('dek_id', sa.String(length=40), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('customer_ref', sa.String(length=128), nullable=True),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dek_id'], ['vault_deks.id'], name=op.f('fk_vault_cards_dek_id_vault_deks')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_vault_cards_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_vault_cards')),
    sa.UniqueConstraint('tenant_id', 'fingerprint', 'exp_month', 'exp_year', name=op.f('uq_vault_cards_tenant_id_fingerprint_exp_month_exp_year'))
    )
    with op.batch_alter_table('vault_cards', schema=None) as batch_op:
        batch_op.create_index('ix_vault_cards_dek', ['dek_id', 'token'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('vault_cards', schema=None) as batch_op:
        batch_op.drop_index('ix_vault_cards_dek')

    op.drop_table('vault_cards')
    with op.batch_alter_table('vault_deks', schema=None) as batch_op:
        batch_op.drop_index('ix_vault_deks_tenant_state')

    op.drop_table('vault_deks')
