"""Audit chain tables: events, per-tenant chain heads, verification watermarks, subjects."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from guard.db import Base, UTCDateTime
from guard.policy import canonical_json


class CanonicalJSON(TypeDecorator[Any]):
    """JSON kept as canonical text (sorted keys, compact), so the database can hash it as stored."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return canonical_json(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return value  # tampered text: served as found, and verification flags it


class AuditEvent(Base):
    """One event in a tenant's hash chain; pruned events keep seq and hash, lose their body."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_ts", "tenant_id", "ts"),
        Index("ix_audit_events_tenant_action", "tenant_id", "action", "seq"),
        Index("ix_audit_events_tenant_subject", "tenant_id", "subject", "seq"),
        Index("ix_audit_events_tenant_actor", "tenant_id", "actor", "seq"),
    )

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    key_id: Mapped[str | None] = mapped_column(String(40))
    role: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    # Stored as canonical JSON text (hashed exactly as stored); read back as Python values.
    reasons: Mapped[list[str] | None] = mapped_column(CanonicalJSON)
    policy_version: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(CanonicalJSON)
    hash: Mapped[str] = mapped_column(String(64))
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditHead(Base):
    """The last seq and hash of a tenant's chain; its row lock serializes appends."""

    __tablename__ = "audit_heads"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class AuditWatermark(Base):
    """How far a tenant's chain has been verified, so verification is incremental."""

    __tablename__ = "audit_watermarks"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subject(Base):
    """A person, known only by a random secret; deleting the secret erases every link."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SubjectIdentifier(Base):
    """Keyed hash of an identifier (customer_ref, phone, email) -> subject."""

    __tablename__ = "subject_identifiers"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    index_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )


class MerkleNode(Base):
    """Hash of a perfect subtree [idx * 2**level, (idx + 1) * 2**level) of a tenant's tree.

    Level 0 (the leaves) is not stored: a leaf is derived from the event's chain hash.
    """

    __tablename__ = "audit_merkle_nodes"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class MerkleState(Base):
    """How many leaves of a tenant's tree have their nodes stored."""

    __tablename__ = "audit_merkle_state"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)


class AuditCheckpoint(Base):
    """A signed statement of a tenant's tree size and root at a time; never goes backwards."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_tenant_size", "tenant_id", "tree_size"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    tree_size: Mapped[int] = mapped_column(Integer)
    root_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class AuditWitness(Base):
    """A tenant's witness: an outside system that receives and keeps every checkpoint."""

    __tablename__ = "audit_witnesses"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(512), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CheckpointReceipt(Base):
    """What a witness answered when given a checkpoint (its receipt or countersignature)."""

    __tablename__ = "audit_checkpoint_receipts"

    checkpoint_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("audit_checkpoints.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(512), primary_key=True)
    ok: Mapped[bool] = mapped_column()
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(String(4096))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
