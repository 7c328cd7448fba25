"""Caller identity tables: enrolled factors, verifications, shared abuse counters, OTP gateways."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guard.db import Base, JSONType, UTCDateTime


class IdentityCustomer(Base):
    """A customer whose factors the tenant's back office enrolled."""

    __tablename__ = "identity_customers"

    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    customer_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdentityFactor(Base):
    """One enrolled factor; secrets only as a slow salted hash (kba) or AES-GCM ciphertext."""

    __tablename__ = "identity_factors"
    __table_args__ = (Index("ix_identity_factors_customer", "tenant_id", "customer_ref"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # fct_...
    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_ref: Mapped[str] = mapped_column(String(128))
    # kba | phone (OTP by SMS) | email (OTP by email) | totp | caller_id (a number on file)
    kind: Mapped[str] = mapped_column(String(16))
    question_id: Mapped[str | None] = mapped_column(String(64))  # kba only
    answer_hash: Mapped[str | None] = mapped_column(String(255))  # kba only: scrypt$...
    key_version: Mapped[int | None] = mapped_column(Integer)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary(512))
    masked: Mapped[str | None] = mapped_column(String(64))  # what admins and agents may see
    # Keyed hash of the normalized contact, to tell "the same number" across factor rows.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Verification(Base):
    """One caller verification, bound to tenant + customer + interaction."""

    __tablename__ = "identity_verifications"
    __table_args__ = (Index("ix_identity_verifications_customer", "tenant_id", "customer_ref"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ver_...
    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_ref: Mapped[str] = mapped_column(String(128))
    interaction_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(8))
    started_key_id: Mapped[str | None] = mapped_column(String(40))
    started_role: Mapped[str | None] = mapped_column(String(32))
    started_actor: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[int] = mapped_column(Integer, default=0)
    level_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # [{"method", "at", "factor_ids": [...], "fingerprints": [...]}]: no secrets.
    passed: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    otp_hash: Mapped[str | None] = mapped_column(String(64))  # HMAC of the current code
    otp_channel: Mapped[str | None] = mapped_column(String(8))
    otp_factor_id: Mapped[str | None] = mapped_column(String(40))
    otp_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    otp_sends: Mapped[int] = mapped_column(Integer, default=0)


class LimitState(Base):
    """Database store of abuse counters: consecutive failures and cool-downs per name."""

    __tablename__ = "identity_limit_state"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    consecutive: Mapped[int] = mapped_column(Integer, default=0)
    blocks: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LimitEvent(Base):
    """Database store of sliding-window members (a customer started, a failed verification)."""

    __tablename__ = "identity_limit_events"
    __table_args__ = (Index("ix_identity_limit_events_bucket_at", "bucket", "at"),)

    bucket: Mapped[str] = mapped_column(String(160), primary_key=True)
    member: Mapped[str] = mapped_column(String(80), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class OtpGateway(Base):
    """A tenant's SMS/email gateway: one-time codes are POSTed there, signed with its secret."""

    __tablename__ = "identity_gateways"

    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    key_version: Mapped[int] = mapped_column(Integer)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerLockout(Base):
    """A customer in cool-down or locked, for the tenant's supervisors (the counters stay keyed)."""

    __tablename__ = "identity_lockouts"

    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    customer_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    cooldown_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cooldowns: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
