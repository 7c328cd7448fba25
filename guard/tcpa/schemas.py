"""Request and response bodies of the outbound-call API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from guard.schemas import AwareDatetime, Request, Response
from guard.tcpa.policy import Purpose

MethodT = Literal["manual", "autodialer", "prerecorded", "sms"]
Ref = str  # length checked by Field


def _all_purposes() -> list[Purpose]:
    return ["telemarketing", "informational", "debt_collection"]


class Address(Request):
    """Where the called party lives (narrows time zones, adds the state's rules)."""

    state: str | None = Field(default=None, min_length=2, max_length=2)
    zip: str | None = Field(default=None, pattern=r"^\d{5}(-\d{4})?$")

    @field_validator("state")
    @classmethod
    def _state(cls, v: str | None) -> str | None:
        from guard.tcpa.geo import is_known_state

        if v is not None and not is_known_state(v):
            raise ValueError("not a US state or territory postal code")
        return v.upper() if v else v


class CallCheck(Request):
    """May this number be called now (or at `at`) for this purpose and method?"""

    phone: str = Field(min_length=1, max_length=40)
    purpose: Purpose
    method: MethodT
    campaign: str | None = Field(default=None, min_length=1, max_length=128)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=128)
    debt_ref: str | None = Field(default=None, min_length=1, max_length=128)
    address: Address | None = None
    at: AwareDatetime | None = None
    record: bool = False

    @model_validator(mode="after")
    def _debt(self) -> CallCheck:
        if self.purpose == "debt_collection" and not self.debt_ref:
            raise ValueError("debt_ref is required for debt_collection (Reg F counts per debt)")
        return self


class LocalWindow(Response):
    """The window the call may happen in on the called party's day (intersection of zones)."""

    timezones: list[str]
    opens_at: datetime | None
    closes_at: datetime | None


class CallDecision(Response):
    """The answer to a check."""

    decision: Literal["allow", "deny"]
    reasons: list[str]
    phone_e164: str | None
    local_window: LocalWindow
    next_allowed_at: datetime | None
    policy_version: str
    registry_versions: dict[str, str]
    attempt_id: str | None
    audit_event: str


class ConsentCreate(Request):
    """Prior express (written) consent with its evidence (16 CFR 310.5)."""

    phone: str = Field(min_length=1, max_length=40)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=128)
    kind: Literal["express", "written"]
    purposes: list[Purpose] = Field(default_factory=lambda: _all_purposes(), min_length=1)
    source: str = Field(min_length=1, max_length=256)
    text_shown: str = Field(min_length=1, max_length=10000)
    channel: Literal["web", "ivr", "sms", "paper", "verbal", "email", "app"]
    captured_at: AwareDatetime


class ConsentRead(Response):
    """A recorded consent."""

    id: str
    kind: str
    purposes: list[str]
    captured_at: datetime
    revoked_at: datetime | None
    voided_at: datetime | None
    audit_event: str


class ConsentRevoke(Request):
    """Revoke every consent of a number (effective for every later check)."""

    phone: str = Field(min_length=1, max_length=40)
    channel: Literal["web", "ivr", "sms", "paper", "verbal", "email", "app"] = "verbal"


class DncAdd(Request):
    """An opt-out: "stop calling me", a STOP reply, a web form."""

    phone: str = Field(min_length=1, max_length=40)
    source: Literal["opt_out", "stop_reply", "verbal", "web", "email", "mail"] = "opt_out"


class RelationshipCreate(Request):
    """Evidence of an established business relationship."""

    customer_ref: str = Field(min_length=1, max_length=128)
    phone: str = Field(min_length=1, max_length=40)
    kind: Literal["purchase", "inquiry"]
    at: AwareDatetime


class LineTypeSet(Request):
    """Mark a number landline or wireless."""

    phone: str = Field(min_length=1, max_length=40)
    line_type: Literal["landline", "wireless"]


class AttemptItem(Request):
    """One attempt made without a recording check."""

    phone: str = Field(min_length=1, max_length=40)
    purpose: Purpose
    method: MethodT
    at: AwareDatetime
    campaign: str | None = Field(default=None, min_length=1, max_length=128)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=128)
    debt_ref: str | None = Field(default=None, min_length=1, max_length=128)


class AttemptsCreate(Request):
    """Attempts to add to the history caps count."""

    attempts: list[AttemptItem] = Field(min_length=1, max_length=10000)


class OutcomeCreate(Request):
    """A call's disposition."""

    phone: str = Field(min_length=1, max_length=40)
    outcome: Literal["connected", "no_answer", "voicemail", "wrong_number", "opt_out", "disconnected"]
    at: AwareDatetime
    attempt_id: str | None = Field(default=None, max_length=40)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=128)
    debt_ref: str | None = Field(default=None, min_length=1, max_length=128)
    purpose: Purpose | None = None


class Subscriptions(Request):
    """National registry area codes the tenant (seller) has paid for."""

    area_codes: list[int] = Field(min_length=1, max_length=1000)

    @field_validator("area_codes")
    @classmethod
    def _codes(cls, v: list[int]) -> list[int]:
        if any(not 200 <= a <= 999 for a in v):
            raise ValueError("area codes are 3 digits, 200-999")
        return sorted(set(v))


class Recorded(Response):
    """Acknowledgement of a write."""

    id: str | None = None
    count: int = 1
    effects: list[str] = []
    audit_event: str


class SubscriptionsRead(Response):
    """The tenant's subscribed area codes."""

    area_codes: list[int]


class ListStatus(Response):
    """One active list."""

    list: str
    version: str
    count: int
    file_date: datetime
    age_days: float
    stale: bool


class DncStatus(Response):
    """Size and age of each list."""

    lists: list[ListStatus]
    internal_count: int


class ScrubContextFields(Request):
    """The context every number of a scrub shares (query parameters for a CSV upload)."""

    purpose: Purpose
    method: MethodT
    campaign: str | None = Field(default=None, min_length=1, max_length=128)
    debt_ref: str | None = Field(default=None, min_length=1, max_length=128)
    state: str | None = Field(default=None, min_length=2, max_length=2)
    zip: str | None = Field(default=None, pattern=r"^\d{5}(-\d{4})?$")
    at: AwareDatetime | None = None

    @field_validator("state")
    @classmethod
    def _state(cls, v: str | None) -> str | None:
        from guard.tcpa.geo import is_known_state

        if v is not None and not is_known_state(v):
            raise ValueError("not a US state or territory postal code")
        return v.upper() if v else v

    @model_validator(mode="after")
    def _debt(self) -> ScrubContextFields:
        if self.purpose == "debt_collection" and not self.debt_ref:
            raise ValueError("debt_ref is required for debt_collection (Reg F counts per debt)")
        return self


MAX_SCRUB = 1_000_000


class ScrubJson(ScrubContextFields):
    """A JSON scrub: the numbers plus the shared context."""

    numbers: list[str] = Field(min_length=1, max_length=MAX_SCRUB)
