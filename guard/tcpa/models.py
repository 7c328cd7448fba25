"""Tables of the outbound-call domain: registries, consents, relationships, attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guard.db import Base, JSONType, UTCDateTime


class RegistryVersion(Base):
    """One imported version of a DNC list (national, state:XX, litigator)."""

    __tablename__ = "tcpa_registry_versions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    list_name: Mapped[str] = mapped_column(String(32), index=True)
    # None: an operator-wide list (national, state) shared by every tenant of this operator.
    tenant_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True)
    # loading -> active -> superseded; a failed import stays `loading` and is never read.
    status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    file_date: Mapped[datetime] = mapped_column(UTCDateTime)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    base_version: Mapped[str | None] = mapped_column(String(40), nullable=True)


class RegistryBlock(Base):
    """The numbers of one area code in one registry version, compact (sorted array or bitmap)."""

    __tablename__ = "tcpa_registry_blocks"

    version_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tcpa_registry_versions.id", ondelete="CASCADE"), primary_key=True)
    area_code: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fmt: Mapped[str] = mapped_column(String(8))
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Subscription(Base):
    """An area code of the national registry a tenant (seller) has paid for."""

    __tablename__ = "tcpa_subscriptions"

    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    area_code: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InternalDnc(Base):
    """The tenant's own do-not-call list (company-specific, 47 CFR 64.1200(d))."""

    __tablename__ = "tcpa_internal_dnc"

    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Consent(Base):
    """Prior express (written) consent with the evidence 16 CFR 310.5 asks to keep."""

    __tablename__ = "tcpa_consents"
    __table_args__ = (Index("ix_tcpa_consents_tenant_phone", "tenant_id", "phone"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    customer_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    purposes: Mapped[list[str]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(256))
    text_shown: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    void_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Relationship(Base):
    """Evidence of an established business relationship (purchase or inquiry)."""

    __tablename__ = "tcpa_relationships"
    __table_args__ = (Index("ix_tcpa_relationships_tenant_phone", "tenant_id", "phone"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_ref: Mapped[str] = mapped_column(String(128))
    phone: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LineType(Base):
    """A tenant's marking of a number as landline (phonenumbers cannot tell in the US)."""

    __tablename__ = "tcpa_line_types"

    tenant_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    line_type: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallAttempt(Base):
    """A call or text attempt (recorded by a check or imported after the fact)."""

    __tablename__ = "tcpa_call_attempts"
    __table_args__ = (
        Index("ix_tcpa_attempts_phone", "tenant_id", "phone", "at"),
        Index("ix_tcpa_attempts_person", "tenant_id", "person_key", "at"),
        Index("ix_tcpa_attempts_debt", "tenant_id", "debt_ref", "at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    person_key: Mapped[str] = mapped_column(String(140))
    customer_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    debt_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    campaign: Mapped[str | None] = mapped_column(String(128), nullable=True)
    purpose: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))


class CallOutcome(Base):
    """A call's disposition (connected, wrong_number, opt_out, ...)."""

    __tablename__ = "tcpa_call_outcomes"
    __table_args__ = (
        Index("ix_tcpa_outcomes_phone", "tenant_id", "phone", "at"),
        Index("ix_tcpa_outcomes_debt", "tenant_id", "debt_ref", "at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    customer_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    debt_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attempt_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(20), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
