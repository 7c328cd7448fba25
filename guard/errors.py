"""The GuardError tree: stable codes rendered as RFC 9457 application/problem+json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

PROBLEM_TYPE_BASE = "https://guard.dev/problems/"


class ConfigError(Exception):
    """Start-up configuration is wrong (a setting, a policy file, the keyring)."""


class GuardError(Exception):
    """Base of every error Guard reports to a client; `code` is stable API."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    # Whether a request that ends in this error is itself worth an audit event.
    audited: ClassVar[bool] = True

    def __init__(
        self,
        detail: str | None = None,
        *,
        reasons: Sequence[str] = (),
        extra: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.reasons = list(reasons)
        self.extra = extra or {}
        if code is not None:
            self.code = code  # type: ignore[misc]

    def problem(self) -> dict[str, Any]:
        """The problem+json body (never includes input values)."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.reasons:
            body["reasons"] = self.reasons
        body.update(self.extra)
        return body


class BadRequest(GuardError):
    status = 400
    code = "bad_request"
    title = "Bad request"
    audited = False


class MalformedJson(BadRequest):
    code = "malformed_json"
    title = "Request body is not valid JSON"


class ValidationFailed(GuardError):
    """Input failed validation; `errors` holds field locations and messages, never values."""

    status = 422
    code = "validation_failed"
    title = "Request failed validation"
    audited = False

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in errors[:5]))
        self.errors = errors

    def problem(self) -> dict[str, Any]:
        body = super().problem()
        body["errors"] = self.errors
        return body


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "body"


class Unauthorized(GuardError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid API key"
    audited = False


class Forbidden(GuardError):
    status = 403
    code = "forbidden"
    title = "This key's roles do not permit this action"


class NotFound(GuardError):
    status = 404
    code = "not_found"
    title = "Not found"
    audited = False


class MethodNotAllowed(GuardError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"
    audited = False


class Conflict(GuardError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(GuardError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"
    audited = False


class UnsupportedMediaType(GuardError):
    status = 415
    code = "unsupported_media_type"
    title = "Content-Type must be application/json"
    audited = False


class Denied(GuardError):
    """A compliance rule refused the action (reasons name the rules)."""

    status = 403
    code = "denied"
    title = "Refused by policy"


class ServiceUnavailable(GuardError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


class InternalError(GuardError):
    status = 500
    code = "internal_error"
    title = "Internal error"


def problem_schema() -> dict[str, Any]:
    """JSON Schema of a problem+json body, for the OpenAPI document."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "request_id": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg"],
                    "properties": {
                        "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
    }
