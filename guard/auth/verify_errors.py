"""Errors of caller verification: stable codes other modules and clients rely on."""

from __future__ import annotations

from typing import Any

from guard.errors import Denied, GuardError


class VerificationError(Denied):
    """Base of the four errors `require_level` raises (403)."""

    title = "Caller verification does not permit this action"


class VerificationRequired(VerificationError):
    """No verification was given, or none with that id exists in this tenant."""

    code = "verification_required"
    title = "Caller verification required"


class VerificationInsufficient(VerificationError):
    """The verification has not reached the level (or freshness) the action needs."""

    code = "verification_insufficient"
    title = "Caller verification level too low"


class VerificationExpired(VerificationError):
    """The verification expired, was ended or was locked."""

    code = "verification_expired"
    title = "Caller verification expired"


class VerificationMismatch(VerificationError):
    """The verification belongs to another customer or interaction."""

    code = "verification_mismatch"
    title = "Caller verification is for another customer or interaction"


class VerificationLocked(GuardError):
    """Too many wrong answers or codes: the verification accepts no more attempts."""

    status = 423
    code = "verification_locked"
    title = "Verification locked after too many failed attempts"


class CustomerLocked(GuardError):
    """Too many consecutive failures: only the back office can re-enable this customer."""

    status = 423
    code = "customer_locked"
    title = "Verification is locked for this customer"


class RateLimited(GuardError):
    """A velocity limit or cool-down: try again after `retry_after` seconds (Retry-After)."""

    status = 429
    code = "rate_limited"
    title = "Too many verification attempts"

    def __init__(self, detail: str, *, code: str, retry_after: int | None,
                 reasons: list[str] | None = None, extra: dict[str, Any] | None = None) -> None:
        payload = dict(extra or {})
        if retry_after is not None:
            payload["retry_after"] = retry_after
        super().__init__(detail, code=code, reasons=reasons or [code], extra=payload)
        self.retry_after = retry_after


class DeliveryUnavailable(GuardError):
    """The one-time code could not be delivered (no gateway configured, or it failed)."""

    status = 503
    code = "otp_delivery_unavailable"
    title = "One-time code delivery unavailable"
