"""foundation: tenants, api keys, audit chain, subjects, policies, jobs

Revision ID: 0001_foundation
Revises: (none)
Create Date: 2026-11-23 15:22:49.439691

The `_system` tenant owns the chain of events that belong to no tenant (unknown API keys).
"""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import guard.db

revision = '0001_foundation'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('ts', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('key_id', sa.String(length=40), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('reasons', sa.Text(), nullable=True),
    sa.Column('policy_version', sa.String(length=64), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('subject', sa.String(length=64), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('pruned_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'seq', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('id', name=op.f('uq_audit_events_id'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_tenant_action', ['tenant_id', 'action', 'seq'], unique=False)
        batch_op.create_index('ix_audit_events_tenant_actor', ['tenant_id', 'actor', 'seq'], unique=False)
        batch_op.create_index('ix_audit_events_tenant_subject', ['tenant_id', 'subject', 'seq'], unique=False)
        batch_op.create_index('ix_audit_events_tenant_ts', ['tenant_id', 'ts'], unique=False)

    op.create_table('audit_heads',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_audit_heads'))
    )
    op.create_table('audit_watermarks',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('verified_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_audit_watermarks'))
    )
    op.create_table('job_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('leased_until', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_started_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_leases'))
    )
    op.create_table('policy_versions',
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('first_used_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_policy_versions'))
    )
    op.create_table('subjects',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('secret', sa.LargeBinary(length=32), nullable=True),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('erased_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subjects'))
    )
    with op.batch_alter_table('subjects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subjects_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('tenants',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('name', name=op.f('uq_tenants_name'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('environment', sa.String(length=8), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('roles', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=True),
    sa.Column('created_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', guard.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_keys_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('policy_overrides',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', guard.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_policy_overrides_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'name', name=op.f('pk_policy_overrides'))
    )
    op.create_table('subject_identifiers',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('index_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_subject_identifiers_subject_id_subjects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'index_hash', name=op.f('pk_subject_identifiers'))
    )
    with op.batch_alter_table('subject_identifiers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subject_identifiers_subject_id'), ['subject_id'], unique=False)

    tenants = sa.table("tenants", sa.column("id"), sa.column("name"),
                       sa.column("created_at", guard.db.UTCDateTime(timezone=True)))
    op.bulk_insert(tenants, [{"id": "ten_system", "name": "_system",
                              "created_at": datetime(2026, 1, 1, tzinfo=UTC)}])
    heads = sa.table("audit_heads", sa.column("tenant_id"), sa.column("seq"), sa.column("hash"))
    op.bulk_insert(heads, [{"tenant_id": "ten_system", "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    with op.batch_alter_table('subject_identifiers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_identifiers_subject_id'))

    op.drop_table('subject_identifiers')
    op.drop_table('policy_overrides')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant_id'))

    op.drop_table('api_keys')
    op.drop_table('tenants')
    with op.batch_alter_table('subjects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subjects_tenant_id'))

    op.drop_table('subjects')
    op.drop_table('policy_versions')
    op.drop_table('job_leases')
    op.drop_table('audit_watermarks')
    op.drop_table('audit_heads')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_tenant_ts')
        batch_op.drop_index('ix_audit_events_tenant_subject')
        batch_op.drop_index('ix_audit_events_tenant_actor')
        batch_op.drop_index('ix_audit_events_tenant_action')

    op.drop_table('audit_events')
