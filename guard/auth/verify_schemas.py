"""Request and response bodies of caller verification (responses never carry secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from guard.schemas import Request, Response

Ref = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
QuestionId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Answers are free text; never echoed (validation errors carry no input).
Answer = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Code6 = Annotated[str, StringConstraints(pattern=r"^[0-9]{6,8}$")]


class KnowledgeAnswer(Request):
    """One question id and its answer."""

    question_id: QuestionId
    answer: Answer


class FactorsPut(Request):
    """A customer's complete factors from the back office (replaces what was enrolled)."""

    knowledge: list[KnowledgeAnswer] = Field(default_factory=list, max_length=10)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    totp_secret: str | None = Field(default=None, max_length=128)
    caller_id_numbers: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        default_factory=list, max_length=10)
    reset_lockout: bool = False


class FactorsRead(Response):
    """Enrolled factors, masked: question ids, masked contacts, whether TOTP is set."""

    customer_ref: str
    knowledge_questions: list[str]
    phone: str | None
    email: str | None
    totp: bool
    caller_id_numbers: list[str]
    updated_at: datetime


class FactorChange(Request):
    """Replace a contact factor during a call, on the strength of a fresh verification."""

    verification_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    interaction_id: Ref
    kind: Literal["phone", "email"]
    new_value: str = Field(min_length=3, max_length=254)


class FactorChanged(Response):
    """The new masked factors and whether the old contact was told."""

    factors: FactorsRead
    kind: str
    old_contact_notified: bool


class VerificationStart(Request):
    """Start verifying the caller of one interaction."""

    customer_ref: Ref
    interaction_id: Ref
    channel: Literal["voice", "chat", "email", "ivr"]
    ani: str | None = Field(default=None, max_length=32)
    stir_shaken: Literal["A", "B", "C"] | None = None


class MethodPassed(Response):
    """A method that passed, and when (never what was answered)."""

    method: str
    at: datetime


class VerificationRead(Response):
    """A verification's state: level, methods passed, expiry. No secrets."""

    id: str
    customer_ref: str
    interaction_id: str
    channel: str
    status: Literal["active", "locked", "ended", "expired"]
    level: int
    methods_available: list[str]
    methods_passed: list[MethodPassed]
    attempts_remaining: int
    otp_sends_remaining: int
    created_at: datetime
    expires_at: datetime
    started_by_key: str | None
    started_by_role: str | None


class KbaCheck(Request):
    """Answers to one or more knowledge questions."""

    answers: list[KnowledgeAnswer] = Field(min_length=1, max_length=5)


class OtpSend(Request):
    """Send a one-time code to the phone (sms) or email on file."""

    channel: Literal["sms", "email"] = "sms"


class OtpSentRead(Response):
    """A code was sent to the contact on file (the same answer whether or not one exists)."""

    verification_id: str
    channel: str
    expires_at: datetime
    sends_remaining: int


class CodeCheck(Request):
    """A one-time or TOTP code."""

    code: Code6


class AttemptRead(Response):
    """The outcome of one answer or code."""

    method: str
    passed: bool
    reason: str | None
    attempts_remaining: int
    verification: VerificationRead


class CustomerStatusRead(Response):
    """A customer's lockout state (supervisors)."""

    customer_ref: str
    failed_verifications: int
    window_hours: int
    consecutive_failures: int
    cooldown_until: datetime | None
    cooldowns: int
    locked: bool


class GatewayPut(Request):
    """Where this tenant's one-time codes are POSTed (its SMS/email gateway)."""

    url: str = Field(min_length=8, max_length=2048)


class GatewayRead(Response):
    """The gateway and its signing secret, shown only in this response."""

    url: str
    signing_secret: str
    signature_header: str


class LockoutRead(Response):
    """One customer in cool-down or locked."""

    customer_ref: str
    cooldown_until: datetime | None
    cooldowns: int
    locked: bool
    updated_at: datetime


class LockoutList(Response):
    """Customers whose verifications are paused or locked now."""

    lockouts: list[LockoutRead]
