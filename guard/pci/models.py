"""Vault tables: wrapped data-encryption keys and encrypted cards (never a PAN in clear)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guard.db import Base, UTCDateTime


class VaultDek(Base):
    """A tenant's data-encryption key, stored only wrapped by a KEK of a KeyProvider."""

    __tablename__ = "vault_deks"
    __table_args__ = (UniqueConstraint("tenant_id", "version"), Index("ix_vault_deks_tenant_state",
                                                                      "tenant_id", "state"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # active: new cards use it (one per tenant); retiring: cards still being moved off it.
    # A DEK no card uses any more is retired by deleting its row (the wrapped key with it).
    state: Mapped[str] = mapped_column(String(16))
    kek_provider: Mapped[str] = mapped_column(String(32))
    kek_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VaultCard(Base):
    """A tokenized card: the PAN only as AES-256-GCM ciphertext bound to tenant and token."""

    __tablename__ = "vault_cards"
    __table_args__ = (
        UniqueConstraint("tenant_id", "fingerprint", "exp_month", "exp_year"),
        Index("ix_vault_cards_dek", "dek_id", "token"),
    )

    token: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), ForeignKey("tenants.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    brand: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str] = mapped_column(String(4))
    bin: Mapped[str | None] = mapped_column(String(6))
    pan_length: Mapped[int] = mapped_column(SmallInteger)
    exp_month: Mapped[int] = mapped_column(SmallInteger)
    exp_year: Mapped[int] = mapped_column(SmallInteger)
    dek_id: Mapped[str] = mapped_column(String(40), ForeignKey("vault_deks.id"))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    customer_ref: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
