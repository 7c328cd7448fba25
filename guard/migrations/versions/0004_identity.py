"""identity: factors, verifications, limits, gateways

Revision ID: 0004_identity
Revises: 0001_foundation
Create Date: 2026-11-23 15:32:04.871289

Caller identity verification: enrolled factors (answers as scrypt hashes, contacts and TOTP
secrets as AES-GCM ciphertext), verifications, the database store of abuse counters (names are
keyed hashes scoped by tenant), and each tenant's signed OTP gateway.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import guard.db

revision = '0004_identity'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('identity_limit_events',
    sa.Column('bucket', sa.String(length=160), nullable=False),
    sa.Column('member', sa.String(length=80), nullable=False),
    sa.Column('at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('bucket', 'member', name=op.f('pk_identity_limit_events'))
    )
    with op.batch_alter_table('identity_limit_events', schema=None) as batch_op:
        batch_op.create_index('ix_identity_limit_events_bucket_at', ['bucket', 'at'], unique=False)

    op.create_table('identity_limit_state',
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('consecutive', sa.Integer(), nullable=False),
    sa.Column('blocks', sa.Integer(), nullable=False),
    sa.Column('blocked_until', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_identity_limit_state'))
    )
    op.create_table('identity_customers',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('customer_ref', sa.String(length=128), nullable=False),
    sa.Column('enrolled_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_identity_customers_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'customer_ref', name=op.f('pk_identity_customers'))
    )
    op.create_table('identity_factors',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('customer_ref', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('question_id', sa.String(length=64), nullable=True),
    sa.Column('answer_hash', sa.String(length=255), nullable=True),
    sa.Column('key_version', sa.Integer(), nullable=True),
    sa.Column('nonce', sa.LargeBinary(length=12), nullable=True),
    sa.Column('ciphertext', sa.LargeBinary(length=512), nullable=True),
    sa.Column('masked', sa.String(length=64), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('totp_last_step', sa.Integer(), nullable=True),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_identity_factors_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_factors'))
    )
    with op.batch_alter_table('identity_factors', schema=None) as batch_op:
        batch_op.create_index('ix_identity_factors_customer', ['tenant_id', 'customer_ref'], unique=False)

    op.create_table('identity_gateways',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.LargeBinary(length=12), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(length=128), nullable=False),
    sa.Column('updated_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_identity_gateways_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_identity_gateways'))
    )
    op.create_table('identity_lockouts',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('customer_ref', sa.String(length=128), nullable=False),
    sa.Column('cooldown_until', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cooldowns', sa.Integer(), nullable=False),
    sa.Column('locked_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_identity_lockouts_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'customer_ref', name=op.f('pk_identity_lockouts'))
    )
    op.create_table('identity_verifications',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('customer_ref', sa.String(length=128), nullable=False),
    sa.Column('interaction_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('started_key_id', sa.String(length=40), nullable=True),
    sa.Column('started_role', sa.String(length=32), nullable=True),
    sa.Column('started_actor', sa.String(length=128), nullable=True),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_activity_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('level_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('passed', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('locked_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=32), nullable=True),
    sa.Column('otp_hash', sa.String(length=64), nullable=True),
    sa.Column('otp_channel', sa.String(length=8), nullable=True),
    sa.Column('otp_factor_id', sa.String(length=40), nullable=True),
    sa.Column('otp_expires_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('otp_sends', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_identity_verifications_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_verifications'))
    )
    with op.batch_alter_table('identity_verifications', schema=None) as batch_op:
        batch_op.create_index('ix_identity_verifications_customer', ['tenant_id', 'customer_ref'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('identity_verifications', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_verifications_customer')

    op.drop_table('identity_verifications')
    op.drop_table('identity_lockouts')
    op.drop_table('identity_gateways')
    with op.batch_alter_table('identity_factors', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_factors_customer')

    op.drop_table('identity_factors')
    op.drop_table('identity_customers')
    op.drop_table('identity_limit_state')
    with op.batch_alter_table('identity_limit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_limit_events_bucket_at')

    op.drop_table('identity_limit_events')
