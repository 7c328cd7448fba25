"""Request and response bodies of the card and redaction routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from guard.schemas import Request, Response

MAX_REDACT_CHARS = 1024 * 1024


class CardCreate(Request):
    """A card as read out by the caller; the number never comes back."""

    number: str = Field(min_length=1, max_length=64)
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=1000, le=9999)
    cvc: str | None = Field(default=None, min_length=1, max_length=8)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=128)


class CardRead(Response):
    """The masked view: BIN (16+ digit PANs only) and last 4, never more (PCI DSS 3.4.1)."""

    token: str
    brand: str
    last4: str
    bin: str | None
    exp_month: int
    exp_year: int
    fingerprint: str
    created_at: datetime
    already_on_file: bool = False
    cvc_captured: bool = False


class CardDeleted(Response):
    """A destroyed card."""

    token: str
    deleted: bool = True


class RedactRequest(Request):
    """Free text to mask (up to 1 MiB of characters)."""

    text: str = Field(max_length=MAX_REDACT_CHARS)


class FindingRead(Response):
    """One masked span of the original text."""

    kind: Literal["pan", "cvc", "expiry", "ssn"]
    start: int
    end: int


class RedactResponse(Response):
    """The masked text and where card data was found."""

    text: str
    findings: list[FindingRead]
