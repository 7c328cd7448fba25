"""Where each SIEM destination has got to in each tenant's audit chain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from guard.db import Base, UTCDateTime


class AuditForwardCursor(Base):
    """The last seq a destination acknowledged for a tenant, and who is forwarding it now."""

    __tablename__ = "audit_forward_cursors"

    # The destination URL without credentials (they never reach the database).
    destination: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    # A lease, so two forwarders (a CLI and the job, or two hosts) never send the same range.
    holder: Mapped[str | None] = mapped_column(String(128))
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
