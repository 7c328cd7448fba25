"""Typed Python client for Guard's HTTP API (what agent tools and dialers import).

Every /v1 route has one method taking keyword arguments and returning the server's own pydantic
response model, so the client and the server cannot drift apart silently (tests compare the
client's routes with the app's URL map). Errors arrive as a typed exception tree built from
problem+json. Idempotent calls (GET, PUT, DELETE, and POSTs given an `idempotency_key`) are
retried on connection errors, 502/503/504 and 429 with bounded exponential backoff.

Card numbers, CVCs, one-time codes and knowledge answers sent by a call are never logged and are
scrubbed from any exception message, even if a server were to echo them.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from guard.audit.schemas import (
    CheckpointRead,
    ConsistencyRead,
    EventPage,
    EventRead,
    InclusionRead,
    SubjectRead,
    VerifyRead,
    WitnessesRead,
)
from guard.auth.schemas import KeyCreated, KeyList, KeyRead, WhoAmI
from guard.auth.verify_schemas import (
    AttemptRead,
    CustomerStatusRead,
    FactorChanged,
    FactorsRead,
    GatewayRead,
    LockoutList,
    OtpSentRead,
    VerificationRead,
)
from guard.pci.schemas import CardDeleted, CardRead, RedactResponse
from guard.policy_api import OverridesRead, PolicyRead
from guard.tcpa.schemas import (
    CallDecision,
    ConsentRead,
    DncStatus,
    Recorded,
    SubscriptionsRead,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
# Methods whose repetition has the effect of one call (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDACTED = "[redacted]"

# (method, Flask rule) of every route a client method calls; filled by @_route at import.
ROUTES: set[tuple[str, str]] = set()


def _route(method: str, rule: str) -> Callable[[F], F]:
    """Declare the route a method covers (compared with the app's URL map by the tests)."""
    ROUTES.add((method, rule))

    def mark(fn: F) -> F:
        routes: list[tuple[str, str]] = getattr(fn, "guard_routes", [])
        fn.guard_routes = [*routes, (method, rule)]  # type: ignore[attr-defined]
        return fn

    return mark


# ----------------------------------------------------------------------------- errors


class GuardClientError(Exception):
    """Base of every error this client raises."""


class GuardConnectionError(GuardClientError):
    """The server could not be reached (after any retries)."""


class GuardAPIError(GuardClientError):
    """The server answered with an error (problem+json); `code` is the stable machine code."""

    def __init__(self, status: int, *, code: str, title: str, detail: str | None = None,
                 errors: list[dict[str, Any]] | None = None, request_id: str | None = None,
                 reasons: list[str] | None = None, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.request_id = request_id
        self.reasons = reasons or []
        self.body = body or {}
        super().__init__(f"{status} {code}: {detail or title}"
                         + (f" (request {request_id})" if request_id else ""))


class BadRequestError(GuardAPIError):
    """400: malformed request."""


class UnauthorizedError(GuardAPIError):
    """401: missing, unknown, expired or revoked API key."""


class ForbiddenError(GuardAPIError):
    """403: the key's roles do not permit this, or the policy refused it."""


class NotFoundError(GuardAPIError):
    """404: no such resource in this tenant."""


class ConflictError(GuardAPIError):
    """409: the request conflicts with the current state."""


class ValidationError(GuardAPIError):
    """422: input failed validation; `errors` names each field (never its value)."""


class RateLimitedError(GuardAPIError):
    """429: too many attempts; `retry_after` is the server's wait in seconds, if it gave one."""

    def __init__(self, status: int, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(status, **kw)


class ServerError(GuardAPIError):
    """5xx: the server failed or is unavailable (fail closed: treat as a refusal)."""


_BY_STATUS: dict[int, type[GuardAPIError]] = {
    400: BadRequestError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError,
    409: ConflictError, 422: ValidationError, 429: RateLimitedError,
}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every secret sent in the request replaced (deep, for str/list/dict)."""
    if not secrets:
        return value
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, REDACTED)
        return value
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    return value


def error_from_response(resp: httpx.Response, secrets: tuple[str, ...] = ()) -> GuardAPIError:
    """The typed exception for an error response (problem+json, or whatever a proxy sent)."""
    body: dict[str, Any] = {}
    try:
        parsed = resp.json()
        if isinstance(parsed, dict):
            body = _scrub(parsed, secrets)
    except ValueError:
        pass  # a proxy's HTML 502 page: status and reason phrase are all there is
    status = resp.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else GuardAPIError)
    kw: dict[str, Any] = {
        "code": str(body.get("code") or f"http_{status}"),
        "title": str(body.get("title") or resp.reason_phrase or "error"),
        "detail": body.get("detail"),
        "errors": body.get("errors") if isinstance(body.get("errors"), list) else None,
        "request_id": body.get("request_id") or resp.headers.get("X-Request-Id"),
        "reasons": body.get("reasons") if isinstance(body.get("reasons"), list) else None,
        "body": body,
    }
    if cls is RateLimitedError:
        return RateLimitedError(status, retry_after=_retry_after(resp.headers.get("Retry-After")), **kw)
    return cls(status, **kw)


# ----------------------------------------------------------------------------- helpers


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("datetimes sent to Guard must be time-zone aware")
        return v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(v, Mapping):
        return {k: _json_value(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return v


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body from keyword arguments, leaving out the ones not given (None)."""
    return {k: _json_value(v) for k, v in fields.items() if v is not None}


def _seg(value: str | int) -> str:
    """One path segment, percent-encoded (a '/' in an id must not change the route)."""
    return quote(str(value), safe="")


class GuardClient:
    """A client of one Guard installation with one API key (thread-safe, like httpx.Client)."""

    def __init__(self, base_url: str, api_key: str, *, actor: str | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.25,
                 max_backoff: float = 8.0, max_retry_after: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 headers: Mapping[str, str] | None = None) -> None:
        """Connect lazily to `base_url`; `actor` is sent as X-Guard-Actor on every call."""
        if retries < 0:
            raise ValueError("retries must be >= 0")
        hdrs = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                "User-Agent": "guard-client"}
        if actor:
            hdrs["X-Guard-Actor"] = actor
        hdrs.update(headers or {})
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=hdrs, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> GuardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- transport

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        """How long to wait before retry number `attempt` (0-based)."""
        if resp is not None and resp.status_code == 429:
            ra = _retry_after(resp.headers.get("Retry-After"))
            if ra is not None:
                return min(ra, self.max_retry_after)
        return float(min(self.max_backoff, self.backoff * (2 ** attempt)))

    def _send(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              content: bytes | str | None = None, content_type: str | None = None,
              idempotency_key: str | None = None, secrets: Iterable[str | None] = (),
              stream: bool = False) -> httpx.Response:
        """Send one call with retries; raise the typed error for a non-2xx answer."""
        headers: dict[str, str] = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if content_type:
            headers["Content-Type"] = content_type
        query = {k: _json_value(v) for k, v in (params or {}).items() if v is not None}
        hidden = tuple(s for s in secrets if s)
        retriable = method in IDEMPOTENT or bool(idempotency_key)
        attempt = 0
        while True:
            request = self._http.build_request(method, path, json=json, params=query or None,
                                               content=content, headers=headers)
            try:
                resp = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if retriable and attempt < self.retries:
                    wait = self._delay(attempt, None)
                    log.info("guard client: %s %s failed (%s); retry in %.2fs",
                             method, path, type(exc).__name__, wait)
                    self._sleep(wait)
                    attempt += 1
                    continue
                raise GuardConnectionError(f"{method} {path}: {type(exc).__name__}") from None
            if resp.is_success:
                return resp
            if retriable and resp.status_code in RETRY_STATUSES and attempt < self.retries:
                wait = self._delay(attempt, resp)
                resp.close()
                log.info("guard client: %s %s answered %d; retry in %.2fs",
                         method, path, resp.status_code, wait)
                self._sleep(wait)
                attempt += 1
                continue
            if stream:
                resp.read()
                resp.close()
            raise error_from_response(resp, hidden)

    def _call(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate(self._send(method, path, **kw).json())

    def _lines(self, method: str, path: str, **kw: Any) -> Iterator[str]:
        """Open a streaming call (errors raise here) and return an iterator of its lines."""
        resp = self._send(method, path, stream=True, **kw)

        def lines() -> Iterator[str]:
            try:
                yield from resp.iter_lines()
            finally:
                resp.close()

        return lines()

    # ------------------------------------------------------------------------- service

    @_route("GET", "/healthz")
    def health(self) -> dict[str, Any]:
        """Liveness (no key needed)."""
        data: dict[str, Any] = self._send("GET", "/healthz").json()
        return data

    @_route("GET", "/readyz")
    def ready(self) -> dict[str, Any]:
        """Readiness: database reachable and migrated (ServerError 503 when not)."""
        data: dict[str, Any] = self._send("GET", "/readyz").json()
        return data

    @_route("GET", "/v1/openapi.json")
    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of this installation."""
        data: dict[str, Any] = self._send("GET", "/v1/openapi.json").json()
        return data

    @_route("GET", "/metrics")
    def metrics(self) -> str:
        """Prometheus text exposition (this tenant's series plus installation-wide ones)."""
        return self._send("GET", "/metrics").text

    # ------------------------------------------------------------------------- keys

    @_route("GET", "/v1/me")
    def me(self) -> WhoAmI:
        """The tenant, key and roles behind this client's API key."""
        return self._call(WhoAmI, "GET", "/v1/me")

    @_route("GET", "/v1/keys")
    def list_keys(self) -> KeyList:
        """This tenant's API keys (never their secrets)."""
        return self._call(KeyList, "GET", "/v1/keys")

    @_route("POST", "/v1/keys")
    def create_key(self, *, roles: list[str], expires_at: datetime | None = None,
                   label: str | None = None, environment: Literal["live", "test"] = "live",
                   idempotency_key: str | None = None) -> KeyCreated:
        """Create an API key; `key` in the answer is shown this once."""
        return self._call(KeyCreated, "POST", "/v1/keys", idempotency_key=idempotency_key,
                          json=_body(roles=roles, expires_at=expires_at, label=label,
                                     environment=environment))

    @_route("DELETE", "/v1/keys/<key_id>")
    def revoke_key(self, key_id: str) -> KeyRead:
        """Revoke an API key of this tenant, effective immediately."""
        return self._call(KeyRead, "DELETE", f"/v1/keys/{_seg(key_id)}")

    # ------------------------------------------------------------------------- identity

    @_route("PUT", "/v1/customers/<customer_ref>/factors")
    def put_factors(self, customer_ref: str, *, knowledge: Mapping[str, str] | None = None,
                    phone: str | None = None, email: str | None = None,
                    totp_secret: str | None = None, caller_id_numbers: list[str] | None = None,
                    reset_lockout: bool = False) -> FactorsRead:
        """Enroll (replace) a customer's factors; `knowledge` maps question id to answer."""
        answers = dict(knowledge or {})
        return self._call(FactorsRead, "PUT", f"/v1/customers/{_seg(customer_ref)}/factors",
                          secrets=[*answers.values(), totp_secret],
                          json=_body(knowledge=[{"question_id": q, "answer": a} for q, a in answers.items()],
                                     phone=phone, email=email, totp_secret=totp_secret,
                                     caller_id_numbers=caller_id_numbers or [],
                                     reset_lockout=reset_lockout))

    @_route("GET", "/v1/customers/<customer_ref>/factors")
    def get_factors(self, customer_ref: str) -> FactorsRead:
        """A customer's enrolled factors, masked."""
        return self._call(FactorsRead, "GET", f"/v1/customers/{_seg(customer_ref)}/factors")

    @_route("POST", "/v1/customers/<customer_ref>/factors/change")
    def change_factor(self, customer_ref: str, *, verification_id: str, interaction_id: str,
                      kind: Literal["phone", "email"], new_value: str,
                      idempotency_key: str | None = None) -> FactorChanged:
        """Replace a customer's phone or email during a call (needs a fresh level-2 verification)."""
        return self._call(FactorChanged, "POST", f"/v1/customers/{_seg(customer_ref)}/factors/change",
                          idempotency_key=idempotency_key,
                          json=_body(verification_id=verification_id, interaction_id=interaction_id,
                                     kind=kind, new_value=new_value))

    @_route("GET", "/v1/customers/<customer_ref>/verification-status")
    def customer_verification_status(self, customer_ref: str) -> CustomerStatusRead:
        """A customer's failed verifications, cool-down and lock."""
        return self._call(CustomerStatusRead, "GET",
                          f"/v1/customers/{_seg(customer_ref)}/verification-status")

    @_route("GET", "/v1/identity/lockouts")
    def list_lockouts(self) -> LockoutList:
        """Customers in cool-down or locked now."""
        return self._call(LockoutList, "GET", "/v1/identity/lockouts")

    @_route("PUT", "/v1/identity/gateway")
    def put_gateway(self, *, url: str) -> GatewayRead:
        """Set the SMS/email gateway webhook; the signing secret is in this answer only."""
        return self._call(GatewayRead, "PUT", "/v1/identity/gateway", json=_body(url=url))

    @_route("POST", "/v1/verifications")
    def start_verification(self, *, customer_ref: str, interaction_id: str,
                           channel: Literal["voice", "chat", "email", "ivr"], ani: str | None = None,
                           stir_shaken: Literal["A", "B", "C"] | None = None,
                           idempotency_key: str | None = None) -> VerificationRead:
        """Start verifying the caller of an interaction."""
        return self._call(VerificationRead, "POST", "/v1/verifications", idempotency_key=idempotency_key,
                          json=_body(customer_ref=customer_ref, interaction_id=interaction_id,
                                     channel=channel, ani=ani, stir_shaken=stir_shaken))

    @_route("GET", "/v1/verifications/<verification_id>")
    def get_verification(self, verification_id: str) -> VerificationRead:
        """A verification's level, methods passed and expiry."""
        return self._call(VerificationRead, "GET", f"/v1/verifications/{_seg(verification_id)}")

    @_route("POST", "/v1/verifications/<verification_id>/kba")
    def check_kba(self, verification_id: str, *, answers: Mapping[str, str]) -> AttemptRead:
        """Check knowledge answers (question id -> answer); never retried (each try counts)."""
        return self._call(AttemptRead, "POST", f"/v1/verifications/{_seg(verification_id)}/kba",
                          secrets=list(answers.values()),
                          json={"answers": [{"question_id": q, "answer": a} for q, a in answers.items()]})

    @_route("POST", "/v1/verifications/<verification_id>/otp")
    def send_otp(self, verification_id: str, *, channel: Literal["sms", "email"] = "sms") -> OtpSentRead:
        """Send a one-time code to the phone or email on file."""
        return self._call(OtpSentRead, "POST", f"/v1/verifications/{_seg(verification_id)}/otp",
                          json={"channel": channel})

    @_route("POST", "/v1/verifications/<verification_id>/otp/check")
    def check_otp(self, verification_id: str, *, code: str) -> AttemptRead:
        """Check the one-time code the caller read back."""
        return self._call(AttemptRead, "POST", f"/v1/verifications/{_seg(verification_id)}/otp/check",
                          secrets=[code], json={"code": code})

    @_route("POST", "/v1/verifications/<verification_id>/totp")
    def check_totp(self, verification_id: str, *, code: str) -> AttemptRead:
        """Check a code from the customer's authenticator app."""
        return self._call(AttemptRead, "POST", f"/v1/verifications/{_seg(verification_id)}/totp",
                          secrets=[code], json={"code": code})

    @_route("POST", "/v1/verifications/<verification_id>/end")
    def end_verification(self, verification_id: str) -> VerificationRead:
        """End a verification when the interaction ends."""
        return self._call(VerificationRead, "POST", f"/v1/verifications/{_seg(verification_id)}/end")

    # ------------------------------------------------------------------------- audit

    @_route("GET", "/v1/audit/events")
    def list_events(self, *, from_: datetime | None = None, to: datetime | None = None,
                    action: str | None = None, actor: str | None = None,
                    outcome: Literal["allow", "deny", "ok", "error"] | None = None,
                    subject: str | None = None, key_id: str | None = None,
                    cursor: str | None = None, limit: int | None = None) -> EventPage:
        """One page of audit events, oldest first (pass `next_cursor` back for the next)."""
        return self._call(EventPage, "GET", "/v1/audit/events", params={
            "from": from_, "to": to, "action": action, "actor": actor, "outcome": outcome,
            "subject": subject, "key_id": key_id, "cursor": cursor, "limit": limit})

    def iter_events(self, **filters: Any) -> Iterator[EventRead]:
        """Every matching event, following cursors page by page (same filters as list_events)."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.list_events(cursor=cursor, **filters)
            yield from page.events
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    @_route("GET", "/v1/audit/events/<event_id>")
    def get_event(self, event_id: str) -> EventRead:
        """One audit event by id."""
        return self._call(EventRead, "GET", f"/v1/audit/events/{_seg(event_id)}")

    @_route("GET", "/v1/audit/verify")
    def verify_audit(self) -> VerifyRead:
        """Verify this tenant's hash chain (from the last watermark, within a time budget)."""
        return self._call(VerifyRead, "GET", "/v1/audit/verify")

    @_route("POST", "/v1/audit/subjects/resolve")
    def resolve_subject(self, *, customer_ref: str | None = None, phone: str | None = None,
                        email: str | None = None) -> SubjectRead:
        """The pseudonym a person's events are filed under (a read: safe to retry)."""
        return self._call(SubjectRead, "POST", "/v1/audit/subjects/resolve",
                          json=_body(customer_ref=customer_ref, phone=phone, email=email))

    @_route("GET", "/v1/audit/checkpoints/latest")
    def latest_checkpoint(self) -> CheckpointRead:
        """The newest signed checkpoint with witness receipts (NotFoundError if none yet)."""
        return self._call(CheckpointRead, "GET", "/v1/audit/checkpoints/latest")

    @_route("POST", "/v1/audit/checkpoints")
    def create_checkpoint(self, *, idempotency_key: str | None = None) -> CheckpointRead:
        """Sign a checkpoint now and deliver it to the witnesses."""
        return self._call(CheckpointRead, "POST", "/v1/audit/checkpoints", idempotency_key=idempotency_key)

    @_route("GET", "/v1/audit/events/<int:seq>/proof")
    def inclusion_proof(self, seq: int, *, size: int | None = None) -> InclusionRead:
        """RFC 9162 inclusion proof of event `seq` (default tree: the latest checkpoint)."""
        return self._call(InclusionRead, "GET", f"/v1/audit/events/{int(seq)}/proof",
                          params={"size": size})

    @_route("GET", "/v1/audit/consistency")
    def consistency_proof(self, *, from_: int, to: int) -> ConsistencyRead:
        """RFC 9162 consistency proof between tree sizes `from_` and `to`."""
        return self._call(ConsistencyRead, "GET", "/v1/audit/consistency",
                          params={"from": from_, "to": to})

    @_route("GET", "/v1/audit/export")
    def export_audit(self, *, from_: datetime | None = None, to: datetime | None = None,
                     format: Literal["jsonl", "csv"] = "jsonl") -> Iterator[str]:
        """Stream an export as lines (header with checkpoint first); close it by exhausting it."""
        return self._lines("GET", "/v1/audit/export",
                           params={"from": from_, "to": to, "format": format})

    @_route("GET", "/v1/audit/witnesses")
    def get_witnesses(self) -> WitnessesRead:
        """This tenant's checkpoint witnesses."""
        return self._call(WitnessesRead, "GET", "/v1/audit/witnesses")

    @_route("PUT", "/v1/audit/witnesses")
    def put_witnesses(self, *, urls: list[str]) -> WitnessesRead:
        """Replace this tenant's checkpoint witnesses."""
        return self._call(WitnessesRead, "PUT", "/v1/audit/witnesses", json={"urls": urls})

    # ------------------------------------------------------------------------- policies

    @_route("GET", "/v1/policies/current")
    def current_policy(self) -> PolicyRead:
        """The policies in force for this tenant now."""
        return self._call(PolicyRead, "GET", "/v1/policies/current")

    @_route("GET", "/v1/policies/overrides")
    def get_overrides(self) -> OverridesRead:
        """This tenant's policy overrides."""
        return self._call(OverridesRead, "GET", "/v1/policies/overrides")

    @_route("PUT", "/v1/policies/overrides")
    def put_overrides(self, *, overrides: Mapping[str, Mapping[str, Any]]) -> OverridesRead:
        """Replace this tenant's overrides (ValidationError if a value leaves its bounds)."""
        return self._call(OverridesRead, "PUT", "/v1/policies/overrides",
                          json={"overrides": {k: dict(v) for k, v in overrides.items()}})

    @_route("GET", "/v1/policies/<version>")
    def get_policy_version(self, version: str) -> PolicyRead:
        """Exactly the rules of a past policy version (as recorded on an audit event)."""
        return self._call(PolicyRead, "GET", f"/v1/policies/{_seg(version)}")

    # ------------------------------------------------------------------------- cards

    @_route("POST", "/v1/cards")
    def tokenize_card(self, *, number: str, exp_month: int, exp_year: int, cvc: str | None = None,
                      customer_ref: str | None = None, idempotency_key: str | None = None) -> CardRead:
        """Tokenize a card; the same card and expiry again give the existing token."""
        return self._call(CardRead, "POST", "/v1/cards", idempotency_key=idempotency_key,
                          secrets=[number, number.replace(" ", "").replace("-", ""), cvc],
                          json=_body(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc,
                                     customer_ref=customer_ref))

    @_route("GET", "/v1/cards/<token>")
    def get_card(self, token: str) -> CardRead:
        """The masked view of a card."""
        return self._call(CardRead, "GET", f"/v1/cards/{_seg(token)}")

    @_route("DELETE", "/v1/cards/<token>")
    def delete_card(self, token: str) -> CardDeleted:
        """Destroy a card's ciphertext."""
        return self._call(CardDeleted, "DELETE", f"/v1/cards/{_seg(token)}")

    @_route("POST", "/v1/redact")
    def redact(self, *, text: str, idempotency_key: str | None = None) -> RedactResponse:
        """Mask card numbers, CVCs, expiry dates and SSNs in free text (stateless: retry with a key)."""
        return self._call(RedactResponse, "POST", "/v1/redact", idempotency_key=idempotency_key,
                          secrets=[text], json={"text": text})

    # ------------------------------------------------------------------------- outbound calls

    @_route("POST", "/v1/calls/check")
    def check_call(self, *, phone: str, purpose: str, method: str, campaign: str | None = None,
                   customer_ref: str | None = None, debt_ref: str | None = None,
                   state: str | None = None, zip: str | None = None, at: datetime | None = None,
                   record: bool = False, idempotency_key: str | None = None) -> CallDecision:
        """May this number be called now (or at `at`)? `record=True` records the attempt."""
        address = _body(state=state, zip=zip) or None
        return self._call(CallDecision, "POST", "/v1/calls/check", idempotency_key=idempotency_key,
                          json=_body(phone=phone, purpose=purpose, method=method, campaign=campaign,
                                     customer_ref=customer_ref, debt_ref=debt_ref, address=address,
                                     at=at, record=record))

    @_route("POST", "/v1/calls/attempts")
    def record_attempts(self, *, attempts: list[Mapping[str, Any]],
                        idempotency_key: str | None = None) -> Recorded:
        """Record attempts made without a recording check (phone, purpose, method, at, ...)."""
        return self._call(Recorded, "POST", "/v1/calls/attempts", idempotency_key=idempotency_key,
                          json={"attempts": [_json_value(a) for a in attempts]})

    @_route("POST", "/v1/calls/outcome")
    def record_outcome(self, *, phone: str, outcome: str, at: datetime, attempt_id: str | None = None,
                       customer_ref: str | None = None, debt_ref: str | None = None,
                       purpose: str | None = None, idempotency_key: str | None = None) -> Recorded:
        """Record a call's disposition."""
        return self._call(Recorded, "POST", "/v1/calls/outcome", idempotency_key=idempotency_key,
                          json=_body(phone=phone, outcome=outcome, at=at, attempt_id=attempt_id,
                                     customer_ref=customer_ref, debt_ref=debt_ref, purpose=purpose))

    @_route("POST", "/v1/consents")
    def record_consent(self, *, phone: str, kind: Literal["express", "written"], source: str,
                       text_shown: str, channel: str, captured_at: datetime,
                       purposes: list[str] | None = None, customer_ref: str | None = None,
                       idempotency_key: str | None = None) -> ConsentRead:
        """Record prior express (written) consent with its evidence."""
        return self._call(ConsentRead, "POST", "/v1/consents", idempotency_key=idempotency_key,
                          json=_body(phone=phone, kind=kind, source=source, text_shown=text_shown,
                                     channel=channel, captured_at=captured_at, purposes=purposes,
                                     customer_ref=customer_ref))

    @_route("POST", "/v1/consents/revoke")
    def revoke_consent(self, *, phone: str, channel: str = "verbal",
                       idempotency_key: str | None = None) -> Recorded:
        """Revoke every consent of a number."""
        return self._call(Recorded, "POST", "/v1/consents/revoke", idempotency_key=idempotency_key,
                          json=_body(phone=phone, channel=channel))

    @_route("POST", "/v1/dnc")
    def add_dnc(self, *, phone: str, source: str = "opt_out",
                idempotency_key: str | None = None) -> Recorded:
        """Put a number on the tenant's internal do-not-call list."""
        return self._call(Recorded, "POST", "/v1/dnc", idempotency_key=idempotency_key,
                          json=_body(phone=phone, source=source))

    @_route("POST", "/v1/relationships")
    def record_relationship(self, *, customer_ref: str, phone: str,
                            kind: Literal["purchase", "inquiry"], at: datetime,
                            idempotency_key: str | None = None) -> Recorded:
        """Record established-business-relationship evidence."""
        return self._call(Recorded, "POST", "/v1/relationships", idempotency_key=idempotency_key,
                          json=_body(customer_ref=customer_ref, phone=phone, kind=kind, at=at))

    @_route("POST", "/v1/numbers/line-type")
    def set_line_type(self, *, phone: str, line_type: Literal["landline", "wireless"],
                      idempotency_key: str | None = None) -> Recorded:
        """Mark a number landline or wireless."""
        return self._call(Recorded, "POST", "/v1/numbers/line-type", idempotency_key=idempotency_key,
                          json=_body(phone=phone, line_type=line_type))

    @_route("POST", "/v1/dnc/subscriptions")
    def subscribe_dnc(self, *, area_codes: list[int],
                      idempotency_key: str | None = None) -> SubscriptionsRead:
        """Record national-registry area codes the tenant subscribed to."""
        return self._call(SubscriptionsRead, "POST", "/v1/dnc/subscriptions",
                          idempotency_key=idempotency_key, json={"area_codes": area_codes})

    @_route("GET", "/v1/dnc/status")
    def dnc_status(self) -> DncStatus:
        """Each do-not-call list's size and age."""
        return self._call(DncStatus, "GET", "/v1/dnc/status")

    @_route("POST", "/v1/calls/scrub")
    def scrub_calls(self, *, numbers: list[str], purpose: str, method: str,
                    campaign: str | None = None, debt_ref: str | None = None,
                    state: str | None = None, zip: str | None = None, at: datetime | None = None,
                    csv: bool = False, idempotency_key: str | None = None) -> Iterator[str]:
        """Scrub a list of numbers; lines of NDJSON (or CSV), one per number, then the summary."""
        context = {"purpose": purpose, "method": method, "campaign": campaign, "debt_ref": debt_ref,
                   "state": state, "zip": zip, "at": at}
        if csv:
            return self._lines("POST", "/v1/calls/scrub", params=context,
                               content="phone\n" + "\n".join(numbers) + "\n", content_type="text/csv",
                               idempotency_key=idempotency_key)
        return self._lines("POST", "/v1/calls/scrub", idempotency_key=idempotency_key,
                           json=_body(numbers=numbers, **context))


__all__ = [
    "ROUTES", "BadRequestError", "ConflictError", "ForbiddenError", "GuardAPIError", "GuardClient",
    "GuardClientError", "GuardConnectionError", "NotFoundError", "RateLimitedError", "ServerError",
    "UnauthorizedError", "ValidationError", "error_from_response",
]
