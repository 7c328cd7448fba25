"""Auditor API bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from guard.schemas import AwareDatetime, Request, Response


class EventQuery(Request):
    """Filters for the audit event search (all optional, combined with AND)."""

    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    action: str | None = Field(default=None, max_length=64,
                               description="exact action, or a prefix ending in *")
    actor: str | None = Field(default=None, max_length=128)
    outcome: Literal["allow", "deny", "ok", "error"] | None = None
    subject: str | None = Field(default=None, max_length=64, description="a subject pseudonym")
    key_id: str | None = Field(default=None, max_length=40)
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=100, ge=1, le=10000)

    @model_validator(mode="after")
    def _range(self) -> EventQuery:
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("from must not be after to")
        return self


class EventRead(Response):
    """One audit event, exactly as hashed (plus its hash)."""

    id: str
    tenant_id: str
    seq: int
    ts: str | None
    key_id: str | None
    role: str | None
    actor: str | None
    action: str | None
    outcome: str | None
    reasons: list[str] | None
    policy_version: str | None
    request_id: str | None
    subject: str | None
    details: dict[str, Any] | None
    hash: str
    pruned: bool


class EventPage(Response):
    """A page of events, oldest first; pass next_cursor to get the next page."""

    events: list[EventRead]
    next_cursor: str | None


class VerifyRead(Response):
    """Chain status: the watermark plus verification of the unverified tail."""

    tenant_id: str
    ok: bool
    complete: bool
    head_seq: int
    verified_through: int
    checked: int
    first_bad_seq: int | None
    problem: str | None
    message: str | None


class SubjectLookup(Request):
    """Identify a person to find their events (the identifiers are never stored or logged)."""

    customer_ref: str | None = Field(default=None, max_length=128)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)

    @model_validator(mode="after")
    def _one(self) -> SubjectLookup:
        if not (self.customer_ref or self.phone or self.email):
            raise ValueError("give customer_ref, phone or email")
        return self


class SubjectRead(Response):
    """The pseudonym events carry for this person, or null if Guard knows none."""

    subject: str | None


class ReceiptRead(Response):
    """A witness's answer to a checkpoint."""

    url: str
    ok: bool
    status: int | None
    response: str | None
    attempts: int
    attempted_at: str | None


class CheckpointRead(Response):
    """A signed checkpoint: tree size and root at a time, with the key to check it."""

    id: str
    tenant_id: str
    tree_size: int
    root_hash: str
    created_at: str | None
    key_id: str
    signature: str
    note: str
    public_key: str
    receipts: list[ReceiptRead] = []


class ProofQuery(Request):
    """Which tree the proof is against (default: the latest checkpoint)."""

    size: int | None = Field(default=None, ge=1)


class InclusionRead(Response):
    """RFC 9162 inclusion proof of one event."""

    seq: int
    leaf_index: int
    tree_size: int
    event_hash: str
    prev_hash: str
    leaf_hash: str
    path: list[str]
    root_hash: str


class ConsistencyQuery(Request):
    """Two tree sizes."""

    from_: int = Field(alias="from", ge=0)
    to: int = Field(ge=1)


class ConsistencyRead(Response):
    """RFC 9162 consistency proof between two tree sizes."""

    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    from_root: str
    to_root: str
    proof: list[str]

    model_config = {"populate_by_name": True, "frozen": True}


class ExportQuery(Request):
    """Time range and format of an export."""

    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    format: Literal["jsonl", "csv"] = "jsonl"


class WitnessesWrite(Request):
    """The outside systems that receive every checkpoint."""

    urls: list[str] = Field(max_length=10)


class WitnessesRead(Response):
    """This tenant's witnesses."""

    urls: list[str]
