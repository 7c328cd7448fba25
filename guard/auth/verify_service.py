"""Caller identity verification: enrollment, verifications, levels, limits and `require_level`.

Which *person* is on the phone (API keys say which *tool* is calling). Every step is audited
with the method and outcome only: no answer, code, secret or contact ever reaches a log, an
audit event, a response or a table in clear. Unknown customers take exactly the same path as
known ones (dummy hash checks, codes generated but not delivered), so nothing can be
enumerated. Never imports flask (except `require_level`'s request fallback, lazily).
"""

from __future__ import annotations

import base64
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import redis
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from guard.audit.service import Outcome, append, identifier_index, subject_pseudonym
from guard.auth import factors as fx
from guard.auth.limits import DbLimitStore, LimitStore, RedisLimitStore
from guard.auth.notifier import Channel, LocalOutbox, Message, Notifier, WebhookNotifier
from guard.auth.verify_errors import (
    CustomerLocked,
    DeliveryUnavailable,
    RateLimited,
    VerificationError,
    VerificationExpired,
    VerificationInsufficient,
    VerificationLocked,
    VerificationMismatch,
    VerificationRequired,
)
from guard.auth.verify_models import (
    CustomerLockout,
    IdentityCustomer,
    IdentityFactor,
    OtpGateway,
    Verification,
)
from guard.auth.verify_policy import METHODS, IdentityPolicy
from guard.clock import Clock
from guard.context import Caller
from guard.errors import NotFound, ValidationFailed
from guard.ids import new_id
from guard.keyring import Keyring
from guard.policy import PolicySet
from guard.runtime import Runtime

__all__ = [
    "IdentityContext", "IdentityRuntime", "LevelCheck", "VerificationError", "VerificationExpired",
    "VerificationInsufficient", "VerificationMismatch", "VerificationRequired", "identity_runtime",
    "require_level",
]

Method = Literal["kba", "caller_id", "otp_sms", "totp", "otp_email"]
GATEWAY_KEY_KIND = "gateway_secret"
_CONTACT_KINDS = {"sms": "phone", "email": "email"}


# ----------------------------------------------------------------------------- runtime


@dataclass
class IdentityRuntime:
    """Process-wide identity parts: hasher cost, counter store, dev outbox, code source."""

    hasher: fx.ScryptHasher
    limits: Callable[[Session], LimitStore]
    outbox: LocalOutbox | None
    store: Literal["database", "redis"]
    # Tests may inject a code source; production uses the OS CSPRNG.
    new_code: Callable[[int], str] = fx.new_code


def identity_runtime(rt: Runtime, *, hasher: fx.ScryptHasher | None = None) -> IdentityRuntime:
    """The runtime's IdentityRuntime, built on first use from its settings.

    `hasher` sets the scrypt cost when it is built (tests pass a cheap one; the default is the
    strong production cost).

    Counters go to Redis when GUARD_REDIS_URL is set, else to the database: either way every
    worker and host shares them. The local outbox exists only with the embedded SQLite database
    (development); production tenants configure a signed webhook gateway.
    """
    ir = rt.extras.get("identity")
    if isinstance(ir, IdentityRuntime):
        return ir
    hasher = hasher or fx.ScryptHasher()
    if rt.settings.redis_url:
        client = redis.Redis.from_url(rt.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        shared = RedisLimitStore(client, rt.settings.redis_prefix)
        ir = IdentityRuntime(hasher=hasher, limits=lambda _s: shared, outbox=None, store="redis")
    else:
        ir = IdentityRuntime(hasher=hasher, limits=DbLimitStore, outbox=None, store="database")
    if rt.settings.database_url.startswith("sqlite"):
        ir.outbox = LocalOutbox(rt.settings.instance_dir / "outbox.jsonl")
    rt.extras["identity"] = ir
    return ir


@dataclass
class IdentityContext:
    """Everything one unit of work needs: its session, clock, policies, keys and caller."""

    session: Session
    clock: Clock
    policies: PolicySet
    keyring: Keyring
    ir: IdentityRuntime
    caller: Caller
    _limits: LimitStore | None = None

    @property
    def tenant_id(self) -> str:
        """The caller's tenant."""
        return self.caller.tenant_id

    @property
    def policy(self) -> IdentityPolicy:
        """The tenant's effective identity policy."""
        p = self.policies.get("identity")
        assert isinstance(p, IdentityPolicy)
        return p

    @property
    def limits(self) -> LimitStore:
        """The shared counter store (bound to this session when it is the database)."""
        if self._limits is None:
            self._limits = self.ir.limits(self.session)
        return self._limits

    @property
    def index_key(self) -> bytes:
        """Key of identifier hashes (the audit subject index key)."""
        return self.keyring.current("subject_index").material

    def now(self) -> datetime:
        """The injected clock's time."""
        return self.clock.now()

    def subject(self, customer_ref: str) -> str | None:
        """The customer's erasable audit pseudonym."""
        return subject_pseudonym(self.session, index_key=self.index_key, tenant_id=self.tenant_id,
                                 identifiers={"customer_ref": customer_ref}, clock=self.clock)

    def audit(self, action: str, outcome: Outcome, *, customer_ref: str | None = None,
              reasons: Sequence[str] = (), details: dict[str, Any] | None = None) -> None:
        """Queue an audit event in this unit of work (methods and outcomes, never secrets)."""
        append(self.session, caller=self.caller, action=action, outcome=outcome, clock=self.clock,
               reasons=list(reasons), policy=self.policies,
               subject=self.subject(customer_ref) if customer_ref else None, details=details)

    def customer_key(self, customer_ref: str) -> str:
        """The customer's name in the counter store (a keyed hash, not the reference)."""
        return "cust:" + identifier_index(self.index_key, self.tenant_id, "customer_ref", customer_ref)


# ----------------------------------------------------------------------------- enrollment


@dataclass(frozen=True)
class KnowledgeIn:
    """One knowledge question and its answer (answer never stored in clear)."""

    question_id: str
    answer: str


@dataclass(frozen=True)
class FactorsIn:
    """A customer's complete set of factors from the tenant's system of record."""

    knowledge: Sequence[KnowledgeIn] = ()
    phone: str | None = None
    email: str | None = None
    totp_secret: str | None = None
    caller_id_numbers: Sequence[str] = ()
    reset_lockout: bool = False


@dataclass(frozen=True)
class FactorsView:
    """What anyone may see of enrolled factors: question ids and masks."""

    customer_ref: str
    knowledge_questions: list[str]
    phone: str | None
    email: str | None
    totp: bool
    caller_id_numbers: list[str]
    updated_at: datetime


def _factors(ix: IdentityContext, customer_ref: str, kind: str | None = None) -> list[IdentityFactor]:
    stmt = select(IdentityFactor).where(IdentityFactor.tenant_id == ix.tenant_id,
                                        IdentityFactor.customer_ref == customer_ref)
    if kind is not None:
        stmt = stmt.where(IdentityFactor.kind == kind)
    return list(ix.session.execute(stmt.order_by(IdentityFactor.created_at, IdentityFactor.id)).scalars())


def _contact_factor(ix: IdentityContext, customer_ref: str, kind: str, value: str) -> IdentityFactor:
    sealed = fx.seal(ix.keyring, value, tenant_id=ix.tenant_id, customer_ref=customer_ref, kind=kind)
    masked = fx.mask_email(value) if kind == "email" else fx.mask_phone(value)
    # caller_id and phone share the fingerprint space: "the same number" across factor kinds.
    fp_kind = "email" if kind == "email" else "phone"
    return IdentityFactor(
        id=new_id("fct"), tenant_id=ix.tenant_id, customer_ref=customer_ref, kind=kind,
        key_version=sealed.key_version, nonce=sealed.nonce, ciphertext=sealed.ciphertext,
        masked=masked, fingerprint=fx.fingerprint(ix.index_key, ix.tenant_id, fp_kind, value),
        created_at=ix.now())


def _validated(data: FactorsIn) -> tuple[str | None, str | None, bytes | None, list[str]]:
    errors: list[dict[str, Any]] = []
    phone = fx.normalize_phone(data.phone) if data.phone else None
    if data.phone and phone is None:
        errors.append({"loc": ["body", "phone"], "msg": "not a valid phone number"})
    email = fx.normalize_email(data.email) if data.email else None
    if data.email and email is None:
        errors.append({"loc": ["body", "email"], "msg": "not a valid email address"})
    totp = fx.parse_totp_secret(data.totp_secret) if data.totp_secret else None
    if data.totp_secret and totp is None:
        errors.append({"loc": ["body", "totp_secret"], "msg": "base32 secret of 128-512 bits required"})
    numbers: list[str] = []
    for i, raw in enumerate(data.caller_id_numbers):
        n = fx.normalize_phone(raw)
        if n is None:
            errors.append({"loc": ["body", "caller_id_numbers", i], "msg": "not a valid phone number"})
        elif n not in numbers:
            numbers.append(n)
    qids = [k.question_id for k in data.knowledge]
    if len(set(qids)) != len(qids):
        errors.append({"loc": ["body", "knowledge"], "msg": "question ids must be unique"})
    for i, k in enumerate(data.knowledge):
        if not fx.normalize_answer(k.answer):
            errors.append({"loc": ["body", "knowledge", i, "answer"], "msg": "answer is empty"})
    if errors:
        raise ValidationFailed(errors)
    return phone, email, totp, numbers


def enroll(ix: IdentityContext, customer_ref: str, data: FactorsIn) -> FactorsView:
    """Replace a customer's factors (admin: the back office syncing its system of record)."""
    phone, email, totp, numbers = _validated(data)
    now = ix.now()
    ix.session.execute(delete(IdentityFactor).where(IdentityFactor.tenant_id == ix.tenant_id,
                                                    IdentityFactor.customer_ref == customer_ref))
    cust = ix.session.get(IdentityCustomer, (ix.tenant_id, customer_ref))
    if cust is None:
        ix.session.add(IdentityCustomer(tenant_id=ix.tenant_id, customer_ref=customer_ref,
                                        enrolled_at=now, updated_at=now))
    else:
        cust.updated_at = now
    for k in data.knowledge:
        ix.session.add(IdentityFactor(id=new_id("fct"), tenant_id=ix.tenant_id, customer_ref=customer_ref,
                                      kind="kba", question_id=k.question_id,
                                      answer_hash=ix.ir.hasher.hash(k.answer), created_at=now))
    if phone:
        ix.session.add(_contact_factor(ix, customer_ref, "phone", phone))
    if email:
        ix.session.add(_contact_factor(ix, customer_ref, "email", email))
    if totp is not None:
        f = _contact_factor(ix, customer_ref, "totp", base64.b32encode(totp).decode())
        f.masked, f.fingerprint = None, None
        ix.session.add(f)
    for n in numbers:
        ix.session.add(_contact_factor(ix, customer_ref, "caller_id", n))
    ix.session.flush()
    if data.reset_lockout:
        ix.limits.clear(ix.customer_key(customer_ref))
        ix.session.execute(delete(CustomerLockout).where(CustomerLockout.tenant_id == ix.tenant_id,
                                                         CustomerLockout.customer_ref == customer_ref))
    view = factors_view(ix, customer_ref)
    ix.audit("identity.factors.enroll", "ok", customer_ref=customer_ref, reasons=["factors_enrolled"],
             details={"knowledge_questions": len(data.knowledge), "has_phone": bool(phone),
                      "has_email": bool(email), "has_totp": totp is not None,
                      "caller_id_count": len(numbers), "lockout_reset": data.reset_lockout})
    return view


def factors_view(ix: IdentityContext, customer_ref: str) -> FactorsView:
    """The masked view of a customer's factors; NotFound if none are enrolled."""
    cust = ix.session.get(IdentityCustomer, (ix.tenant_id, customer_ref))
    if cust is None:
        raise NotFound("no factors enrolled for this customer", code="customer_not_enrolled")
    rows = _factors(ix, customer_ref)
    return FactorsView(
        customer_ref=customer_ref,
        knowledge_questions=sorted(f.question_id for f in rows if f.kind == "kba" and f.question_id),
        phone=next((f.masked for f in rows if f.kind == "phone"), None),
        email=next((f.masked for f in rows if f.kind == "email"), None),
        totp=any(f.kind == "totp" for f in rows),
        caller_id_numbers=[f.masked or "" for f in rows if f.kind == "caller_id"],
        updated_at=cust.updated_at)


def _unseal(ix: IdentityContext, f: IdentityFactor) -> str:
    assert f.key_version is not None and f.nonce is not None and f.ciphertext is not None
    return fx.unseal(ix.keyring, fx.Sealed(f.key_version, f.nonce, f.ciphertext),
                     tenant_id=f.tenant_id, customer_ref=f.customer_ref, kind=f.kind)


# ----------------------------------------------------------------------------- verifications


def expires_at(v: Verification, policy: IdentityPolicy) -> datetime:
    """Idle expiry, capped by the maximum lifetime."""
    return min(v.last_activity_at + timedelta(minutes=policy.verification.idle_minutes),
               v.created_at + timedelta(minutes=policy.verification.max_lifetime_minutes))


def status_of(v: Verification, policy: IdentityPolicy, now: datetime) -> str:
    """active | locked | ended | expired."""
    if v.locked_at is not None:
        return "locked"
    if v.ended_at is not None:
        return "ended"
    if now >= expires_at(v, policy):
        return "expired"
    return "active"


def methods_available(policy: IdentityPolicy) -> list[str]:
    """Methods an agent may try: the same list for every customer, enrolled or not (no enumeration)."""
    # Caller ID is evidence the telephony integration brings at start, not a method to try.
    return [m for m in METHODS if m != "caller_id"]


def _retry_after(oldest: datetime | None, window: timedelta, now: datetime) -> int:
    if oldest is None:
        return int(window.total_seconds())
    return max(1, math.ceil((oldest + window - now).total_seconds()))


def _check_customer(ix: IdentityContext, customer_ref: str) -> None:
    limits = ix.policy.limits
    state = ix.limits.state(ix.customer_key(customer_ref))
    now = ix.now()
    if state.consecutive >= limits.max_consecutive_failures:
        raise CustomerLocked("too many consecutive failed attempts; the back office must re-enroll",
                             reasons=["customer_locked"])
    if state.blocked_until is not None and state.blocked_until > now:
        raise RateLimited("verifications for this customer are paused after repeated failures",
                          code="customer_cooldown",
                          retry_after=max(1, math.ceil((state.blocked_until - now).total_seconds())))


def _check_key_velocity(ix: IdentityContext, customer_ref: str) -> None:
    limits = ix.policy.limits
    caller = ix.caller
    caps: dict[str, int] = {str(k): v for k, v in limits.key_distinct_customers.items()}
    # A role without its own limit gets the strictest one.
    cap = caps.get(caller.role or "", min(caps.values()))
    window = timedelta(minutes=limits.key_window_minutes)
    now = ix.now()
    seen = ix.limits.window_add(f"key:{caller.key_id}", ix.customer_key(customer_ref)[5:],
                                now=now, window=window)
    if seen.count > cap:
        raise RateLimited("this API key started verifications for too many customers",
                          code="key_velocity", retry_after=_retry_after(seen.oldest, window, now))


@dataclass(frozen=True)
class StartIn:
    """A new verification request."""

    customer_ref: str
    interaction_id: str
    channel: Literal["voice", "chat", "email", "ivr"]
    ani: str | None = None
    stir_shaken: Literal["A", "B", "C"] | None = None


def start(ix: IdentityContext, data: StartIn) -> Verification:
    """Start a verification bound to tenant + customer + interaction; apply caller-ID evidence."""
    _check_key_velocity(ix, data.customer_ref)
    _check_customer(ix, data.customer_ref)
    now = ix.now()
    v = Verification(id=new_id("ver"), tenant_id=ix.tenant_id, customer_ref=data.customer_ref,
                     interaction_id=data.interaction_id, channel=data.channel,
                     started_key_id=ix.caller.key_id, started_role=ix.caller.role,
                     started_actor=ix.caller.actor, created_at=now, last_activity_at=now, level=0,
                     passed=[], failures=0, otp_sends=0)
    ix.session.add(v)
    evidence = _caller_id_evidence(ix, data)
    if evidence is not None:
        _record_pass(ix, v, "caller_id", [evidence.id], [evidence.fingerprint or ""])
        result = "matched"
    elif data.ani is None:
        result = "absent"
    else:
        result = "no_match" if "dialer" in ix.caller.roles else "untrusted_key"
    ix.session.flush()
    ix.audit("identity.verification.start", "ok", customer_ref=data.customer_ref,
             reasons=["verification_started", f"caller_id_{result}"],
             details={"verification_id": v.id, "interaction_id": data.interaction_id,
                      "channel": data.channel, "level": v.level,
                      "attestation": data.stir_shaken})
    return v


def _caller_id_evidence(ix: IdentityContext, data: StartIn) -> IdentityFactor | None:
    # Only the telephony integration (a dialer-role key) can vouch for ANI and attestation: an
    # agent or AI agent could be talked into claiming "A".
    if data.ani is None or "dialer" not in ix.caller.roles:
        return None
    if data.stir_shaken is None or data.stir_shaken not in ix.policy.caller_id.attestations:
        return None
    ani = fx.normalize_phone(data.ani)
    if ani is None:
        return None
    fp = fx.fingerprint(ix.index_key, ix.tenant_id, "phone", ani)
    match: IdentityFactor | None = None
    for f in _factors(ix, data.customer_ref, "caller_id"):
        if fx.codes_equal(f.fingerprint or "", fp) and match is None:
            match = f
    return match


def load(ix: IdentityContext, verification_id: str, *, lock: bool = False) -> Verification:
    """A verification of this tenant (404 for another tenant's or an unknown id)."""
    stmt = select(Verification).where(Verification.id == verification_id,
                                      Verification.tenant_id == ix.tenant_id)
    if lock:
        stmt = stmt.with_for_update()
    v = ix.session.execute(stmt).scalar_one_or_none()
    if v is None:
        raise NotFound("no such verification", code="verification_not_found")
    return v


def _usable(ix: IdentityContext, verification_id: str) -> Verification:
    v = load(ix, verification_id, lock=True)
    state = status_of(v, ix.policy, ix.now())
    if state == "locked":
        raise VerificationLocked(reasons=["verification_locked"])
    if state != "active":
        raise VerificationExpired(f"verification {state}", reasons=[f"verification_{state}"])
    v.last_activity_at = ix.now()
    return v


def _record_pass(ix: IdentityContext, v: Verification, method: str, factor_ids: list[str],
                 fingerprints: list[str]) -> None:
    now = ix.now()
    passed = [p for p in (v.passed or []) if p["method"] != method]
    passed.append({"method": method, "at": now.isoformat(), "factor_ids": factor_ids,
                   "fingerprints": [f for f in fingerprints if f]})
    v.passed = passed
    level = ix.policy.level_for(p["method"] for p in passed)
    if level > v.level:
        v.level, v.level_at = level, now
    # NIST SP 800-63B 5.2.2 counts *consecutive* failures: a success restarts the count. Caller
    # ID arrives without the caller answering anything, so it does not count as that success.
    if method != "caller_id":
        ix.limits.reset_failures(ix.customer_key(v.customer_ref))


def _record_failure(ix: IdentityContext, v: Verification) -> None:
    limits = ix.policy.limits
    now = ix.now()
    name = ix.customer_key(v.customer_ref)
    v.failures += 1
    if v.failures == 1:
        # The first failure makes this a failed verification for the per-customer window.
        window = timedelta(hours=limits.customer_window_hours)
        failed = ix.limits.window_add("custfail:" + name[5:], v.id, now=now, window=window)
        cooldown = None
        if failed.count >= limits.customer_failed_verifications:
            cooldown = ix.limits.start_cooldown(
                name, now=now, base=timedelta(minutes=limits.cooldown_base_minutes),
                cap=timedelta(minutes=limits.cooldown_max_minutes))
        if cooldown is not None:
            _note_lockout(ix, v.customer_ref, cooldown_until=cooldown.until, cooldowns=cooldown.blocks)
            ix.audit("identity.customer.cooldown", "deny", customer_ref=v.customer_ref,
                     reasons=["customer_cooldown_started"],
                     details={"minutes": round((cooldown.until - now).total_seconds() / 60),
                              "failed_verifications": failed.count, "cooldowns": cooldown.blocks})
    consecutive = ix.limits.add_failure(name)
    if consecutive == limits.max_consecutive_failures:
        _note_lockout(ix, v.customer_ref, locked=True)
        ix.audit("identity.customer.locked", "deny", customer_ref=v.customer_ref,
                 reasons=["customer_locked"], details={"consecutive_failures": consecutive})
    if v.failures >= limits.max_failures_per_verification:
        v.locked_at = now
        v.ended_at = now
        v.end_reason = "locked"


def _note_lockout(ix: IdentityContext, customer_ref: str, *, cooldown_until: datetime | None = None,
                  cooldowns: int | None = None, locked: bool = False) -> None:
    """Keep the supervisors' list of paused and locked customers (in the request transaction)."""
    row = ix.session.get(CustomerLockout, (ix.tenant_id, customer_ref))
    if row is None:
        row = CustomerLockout(tenant_id=ix.tenant_id, customer_ref=customer_ref, cooldowns=0,
                              updated_at=ix.now())
        ix.session.add(row)
    if cooldown_until is not None:
        row.cooldown_until = cooldown_until
    if cooldowns is not None:
        row.cooldowns = cooldowns
    if locked:
        row.locked_at = ix.now()
    row.updated_at = ix.now()
    ix.session.flush()


def lockouts(ix: IdentityContext) -> list[CustomerLockout]:
    """Customers in cool-down now or locked, most recent first (supervisors)."""
    now = ix.now()
    rows = ix.session.execute(select(CustomerLockout).where(
        CustomerLockout.tenant_id == ix.tenant_id,
        (CustomerLockout.locked_at.is_not(None)) | (CustomerLockout.cooldown_until > now))
        .order_by(CustomerLockout.updated_at.desc(), CustomerLockout.customer_ref).limit(1000)).scalars()
    ix.audit("identity.lockouts.read", "ok", reasons=["lockouts_read"])
    return list(rows)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one answer or code: passed or not, and what is left (no secrets)."""

    verification: Verification
    method: str
    passed: bool
    reason: str | None
    attempts_remaining: int


def _finish(ix: IdentityContext, v: Verification, method: str, reason: str | None, *,
            evidence: Sequence[IdentityFactor] = (), details: dict[str, Any] | None = None) -> Attempt:
    ok = reason is None
    if ok:
        _record_pass(ix, v, method, [f.id for f in evidence], [f.fingerprint or "" for f in evidence])
    else:
        _record_failure(ix, v)
    ix.session.flush()
    remaining = max(0, ix.policy.limits.max_failures_per_verification - v.failures)
    reasons = [f"{method}_passed"] if ok else [f"{method}_failed", f"{method}_{reason}"]
    if v.locked_at is not None:
        reasons.append("verification_locked")
    ix.audit(f"identity.{method}.check", "ok" if ok else "deny", customer_ref=v.customer_ref,
             reasons=reasons, details={"verification_id": v.id, "level": v.level,
                                       "failures": v.failures, **(details or {})})
    return Attempt(v, method, ok, reason, remaining)


def check_kba(ix: IdentityContext, verification_id: str, answers: Sequence[KnowledgeIn]) -> Attempt:
    """Check knowledge answers; all must be right. Unknown customers get dummy hash checks."""
    v = _usable(ix, verification_id)
    max_answers = ix.policy.kba.max_answers_per_attempt
    if len(answers) > max_answers:
        raise ValidationFailed([{"loc": ["body", "answers"], "msg": f"at most {max_answers} answers"}])
    stored = {f.question_id: f for f in _factors(ix, v.customer_ref, "kba")}
    ok = True
    used: list[IdentityFactor] = []
    for a in answers:
        f = stored.get(a.question_id)
        # Exactly one scrypt check per answer, known question or not (no short-circuit).
        good = ix.ir.hasher.verify(a.answer, f.answer_hash if f else None)
        ok = ok and good and f is not None
        if f is not None:
            used.append(f)
    return _finish(ix, v, "kba", None if ok else "incorrect", evidence=used if ok else (),
                   details={"questions": len(answers)})


def _gateway(ix: IdentityContext) -> Notifier:
    gw = ix.session.get(OtpGateway, ix.tenant_id)
    if gw is not None:
        secret = fx.unseal(ix.keyring, fx.Sealed(gw.key_version, gw.nonce, gw.ciphertext),
                           tenant_id=ix.tenant_id, customer_ref="", kind=GATEWAY_KEY_KIND)
        return WebhookNotifier(gw.url, bytes.fromhex(secret))
    if ix.ir.outbox is not None:
        return ix.ir.outbox
    raise DeliveryUnavailable("no SMS/email gateway is configured for this tenant",
                              reasons=["otp_gateway_missing"])


@dataclass(frozen=True)
class OtpSent:
    """A code was generated (and delivered when the customer has that contact)."""

    verification: Verification
    channel: Channel
    expires_at: datetime
    sends_remaining: int
    delivery: tuple[Notifier, Message] | None = field(default=None, repr=False)


def send_otp(ix: IdentityContext, verification_id: str, channel: Channel) -> OtpSent:
    """Generate and store (hashed) a new code; the caller delivers it after committing."""
    v = _usable(ix, verification_id)
    rules = ix.policy.otp
    if v.otp_sends >= rules.max_sends_per_verification:
        raise RateLimited("no more codes may be sent for this verification", code="otp_send_limit",
                          retry_after=None)
    notifier = _gateway(ix)
    kind = _CONTACT_KINDS[channel]
    factor = next(iter(_factors(ix, v.customer_ref, kind)), None)
    now = ix.now()
    # Unknown customer or no such contact: the same counters, under the customer's name.
    dest_name = factor.fingerprint if factor is not None and factor.fingerprint else \
        f"none:{ix.customer_key(v.customer_ref)[5:]}:{channel}"
    window = timedelta(minutes=rules.destination_window_minutes)
    sent = ix.limits.window_add("otpdest:" + dest_name, new_id("snd"), now=now, window=window)
    if sent.count > rules.destination_sends_per_window:
        raise RateLimited("too many codes sent to this destination", code="otp_destination_limit",
                          retry_after=_retry_after(sent.oldest, window, now))
    code = ix.ir.new_code(rules.digits)
    v.otp_hash = fx.code_hash(ix.keyring.current(fx.CODE_KEY_PURPOSE).material, v.id, code)
    v.otp_channel = channel
    v.otp_factor_id = factor.id if factor is not None else None
    v.otp_expires_at = now + timedelta(minutes=rules.ttl_minutes)
    v.otp_sends += 1
    delivery = None
    if factor is not None:
        msg = Message(tenant_id=ix.tenant_id, channel=channel, destination=_unseal(ix, factor),
                      purpose="otp", message_id=new_id("msg"),
                      body=f"Your verification code is {code}. It expires in {rules.ttl_minutes} minutes.")
        delivery = (notifier, msg)
    ix.session.flush()
    ix.audit("identity.otp.send", "ok", customer_ref=v.customer_ref, reasons=["otp_sent"],
             details={"verification_id": v.id, "channel": channel, "sends": v.otp_sends})
    return OtpSent(v, channel, v.otp_expires_at, rules.max_sends_per_verification - v.otp_sends, delivery)


def check_otp(ix: IdentityContext, verification_id: str, code: str) -> Attempt:
    """Check a one-time code: single use, expires, 5 wrong codes lock the verification."""
    v = _usable(ix, verification_id)
    now = ix.now()
    key = ix.keyring.current(fx.CODE_KEY_PURPOSE).material
    presented = fx.code_hash(key, v.id, code)
    # Compare against a random value when no code is outstanding: the same work either way.
    matches = fx.codes_equal(presented, v.otp_hash or secrets.token_hex(32))
    reason: str | None = None
    if v.otp_hash is None:
        reason = "no_code"
    elif v.otp_expires_at is None or now >= v.otp_expires_at:
        reason = "expired"
    elif not matches or v.otp_factor_id is None:
        reason = "incorrect"
    method = "otp_email" if v.otp_channel == "email" else "otp_sms"
    factor = ix.session.get(IdentityFactor, v.otp_factor_id) if v.otp_factor_id else None
    if reason is None and factor is None:
        reason = "incorrect"  # the contact was replaced since the code was sent: it proves nothing
    if reason in (None, "expired"):
        v.otp_hash = None  # single use; an expired code is spent too
    return _finish(ix, v, method, reason, evidence=[factor] if reason is None and factor else (),
                   details={"channel": v.otp_channel})


def check_totp(ix: IdentityContext, verification_id: str, code: str) -> Attempt:
    """Check a TOTP code (+-drift steps); each time step is accepted once per factor."""
    v = _usable(ix, verification_id)
    rules = ix.policy.totp
    factor = next(iter(_factors(ix, v.customer_ref, "totp")), None)
    secret = fx.parse_totp_secret(_unseal(ix, factor)) if factor is not None else None
    step = fx.totp_match(secret or secrets.token_bytes(20), code, at=ix.now().timestamp(),
                         step=rules.step_seconds, drift=rules.drift_steps)
    reason: str | None = None
    if factor is None or secret is None or step is None:
        reason = "incorrect"
    else:
        # Compare-and-set: two workers given the same code cannot both accept it.
        res = ix.session.execute(
            update(IdentityFactor)
            .where(IdentityFactor.id == factor.id,
                   (IdentityFactor.totp_last_step.is_(None)) | (IdentityFactor.totp_last_step < step))
            .values(totp_last_step=step).execution_options(synchronize_session=False))
        if getattr(res, "rowcount", 0) != 1:
            reason = "replayed"
    return _finish(ix, v, "totp", reason, evidence=[factor] if reason is None and factor else ())


def end(ix: IdentityContext, verification_id: str) -> Verification:
    """End a verification (the interaction is over); idempotent."""
    v = load(ix, verification_id, lock=True)
    if v.ended_at is None:
        v.ended_at = ix.now()
        v.end_reason = "ended"
        ix.session.flush()
        ix.audit("identity.verification.end", "ok", customer_ref=v.customer_ref,
                 reasons=["verification_ended"], details={"verification_id": v.id, "level": v.level})
    return v


# ----------------------------------------------------------------------------- require_level


@dataclass(frozen=True)
class LevelCheck:
    """A passed `require_level`: which verification, its level and methods, the policy used."""

    verification_id: str | None
    action: str
    required_level: int
    level: int
    methods: tuple[str, ...]
    policy_version: str
    passed: tuple[dict[str, Any], ...] = ()


def require_level(
    *,
    tenant_id: str,
    verification_id: str | None,
    customer_ref: str,
    interaction_id: str,
    action: str,
    context: IdentityContext | None = None,
) -> LevelCheck:
    """Raise unless the caller's verification allows `action` for this customer and interaction.

    Errors (all 403 GuardErrors, audited by the request's error handler):
    `verification_required` (no id, or no such verification in `tenant_id`),
    `verification_expired` (idle/lifetime expiry, ended, locked),
    `verification_mismatch` (another customer or interaction),
    `verification_insufficient` (level too low, or not fresh for actions that need freshness).
    Actions the law exempts (CCPA opt-out of sale/sharing) pass with no verification at all.
    An unknown action fails closed with ValueError (a programming error, not input).

    Inside a Guard request, call it with exactly the keyword arguments above; the session,
    clock, policies and caller come from the request. Elsewhere (CLI, jobs) pass `context`.
    On success it refreshes the verification's idle timer and queues an `identity.require`
    audit event in the current transaction.
    """
    ix = context if context is not None else _request_context()
    if ix.tenant_id != tenant_id:
        raise VerificationRequired("no verification for this tenant", reasons=["verification_tenant"])
    policy = ix.policy
    rule = policy.actions.get(action)
    if rule is None:
        raise ValueError(f"unknown action {action!r}: add it to policies/identity.yaml")
    if rule.level == 0:
        ix.audit("identity.require", "allow", customer_ref=customer_ref,
                 reasons=["verification_not_required"],
                 details={"action": action, "required_level": 0, "interaction_id": interaction_id})
        return LevelCheck(None, action, 0, 0, (), ix.policies.version)
    if not verification_id:
        raise VerificationRequired(f"{action} needs a caller verification at level {rule.level}",
                                   reasons=["verification_missing"], extra={"required_level": rule.level})
    v = ix.session.execute(select(Verification).where(
        Verification.id == verification_id, Verification.tenant_id == tenant_id)
        .with_for_update()).scalar_one_or_none()
    if v is None:
        raise VerificationRequired("no such verification", reasons=["verification_unknown"],
                                   extra={"required_level": rule.level})
    now = ix.now()
    state = status_of(v, policy, now)
    if state != "active":
        raise VerificationExpired(f"verification {state}", reasons=[f"verification_{state}"])
    # Constant-time: the references are not secret, but a mismatch must not be probed cheaply.
    if not (fx.codes_equal(v.customer_ref, customer_ref)
            and fx.codes_equal(v.interaction_id, interaction_id)):
        raise VerificationMismatch("verification belongs to another customer or interaction",
                                   reasons=["verification_mismatch"])
    if v.level < rule.level:
        raise VerificationInsufficient(
            f"{action} needs level {rule.level}; this verification is at level {v.level}",
            reasons=["level_too_low"], extra={"required_level": rule.level, "level": v.level})
    if rule.fresh_minutes is not None and (
            v.level_at is None or now - v.level_at > timedelta(minutes=rule.fresh_minutes)):
        raise VerificationInsufficient(
            f"{action} needs level {rule.level} reached within {rule.fresh_minutes} minutes",
            reasons=["verification_not_fresh"], extra={"required_level": rule.level, "level": v.level})
    v.last_activity_at = now
    ix.session.flush()
    methods = tuple(p["method"] for p in v.passed or [])
    ix.audit("identity.require", "allow", customer_ref=customer_ref, reasons=["verification_sufficient"],
             details={"action": action, "verification_id": v.id, "required_level": rule.level,
                      "level": v.level, "methods": list(methods)})
    return LevelCheck(v.id, action, rule.level, v.level, methods, ix.policies.version,
                      tuple(v.passed or []))


def _request_context() -> IdentityContext:
    # Lazy: keeps this module free of flask for CLI/job callers, who pass `context`.
    from guard.auth.verify_api import request_identity_context

    return request_identity_context()


# ----------------------------------------------------------------------------- contact change


@dataclass(frozen=True)
class ContactChanged:
    """A replaced contact factor, and the notice owed to the old contact."""

    view: FactorsView
    kind: str
    notice: tuple[Notifier, Message] = field(repr=False)


def change_contact(ix: IdentityContext, customer_ref: str, *, verification_id: str, interaction_id: str,
                   kind: Literal["phone", "email"], new_value: str) -> ContactChanged:
    """Replace a phone/email during a call: fresh level-2 verification not using the old factor."""
    check = require_level(tenant_id=ix.tenant_id, verification_id=verification_id,
                          customer_ref=customer_ref, interaction_id=interaction_id,
                          action="change_contact", context=ix)
    normalized = fx.normalize_phone(new_value) if kind == "phone" else fx.normalize_email(new_value)
    if normalized is None:
        raise ValidationFailed([{"loc": ["body", "new_value"], "msg": f"not a valid {kind}"}])
    old = next(iter(_factors(ix, customer_ref, kind)), None)
    if old is None:
        raise NotFound(f"no {kind} enrolled; the back office enrolls new factors",
                       code="factor_not_enrolled")
    used = any(old.id in p.get("factor_ids", []) or (old.fingerprint and old.fingerprint in
                                                     p.get("fingerprints", []))
               for p in check.passed)
    if used:
        # "Send the code to my new phone" after proving the old one is fine; proving the old
        # contact is exactly what a SIM-swapper can do, so that evidence cannot authorize this.
        raise VerificationInsufficient(
            f"this verification used the {kind} being replaced; verify with other factors",
            reasons=["verification_used_replaced_factor"])
    old_destination = _unseal(ix, old)
    ix.session.delete(old)
    ix.session.flush()
    new = _contact_factor(ix, customer_ref, kind, normalized)
    ix.session.add(new)
    cust = ix.session.get(IdentityCustomer, (ix.tenant_id, customer_ref))
    if cust is not None:
        cust.updated_at = ix.now()
    ix.session.flush()
    channel: Channel = "sms" if kind == "phone" else "email"
    notifier = _gateway(ix)  # no way to warn the old contact: refuse the change (fail closed)
    notice = (notifier, Message(
        tenant_id=ix.tenant_id, channel=channel, destination=old_destination,
        purpose="contact_changed", message_id=new_id("msg"),
        body=f"The {'phone number' if kind == 'phone' else 'email address'} on your account "
             "was changed. If this was not you, contact us now."))
    ix.audit("identity.factors.change", "ok", customer_ref=customer_ref, reasons=["contact_changed"],
             details={"kind": kind, "verification_id": verification_id, "level": check.level,
                      "methods": list(check.methods)})
    return ContactChanged(factors_view(ix, customer_ref), kind, notice)


# ----------------------------------------------------------------------------- supervision


@dataclass(frozen=True)
class CustomerStatus:
    """A customer's lockout state, for the tenant's supervisors."""

    customer_ref: str
    failed_verifications: int
    window_hours: int
    consecutive_failures: int
    cooldown_until: datetime | None
    cooldowns: int
    locked: bool


def customer_status(ix: IdentityContext, customer_ref: str) -> CustomerStatus:
    """Failed verifications in the window, consecutive failures, cool-down, hard lock."""
    limits = ix.policy.limits
    name = ix.customer_key(customer_ref)
    now = ix.now()
    window = ix.limits.window("custfail:" + name[5:], now=now,
                              window=timedelta(hours=limits.customer_window_hours))
    state = ix.limits.state(name)
    until = state.blocked_until if state.blocked_until and state.blocked_until > now else None
    ix.audit("identity.customer.status", "ok", customer_ref=customer_ref, reasons=["status_read"])
    return CustomerStatus(customer_ref, window.count, limits.customer_window_hours, state.consecutive,
                          until, state.blocks, state.consecutive >= limits.max_consecutive_failures)


# ----------------------------------------------------------------------------- gateway


def _valid_gateway_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    # Plain HTTP only to this host (a sidecar gateway, or tests): codes never cross a network in clear.
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def set_gateway(ix: IdentityContext, url: str) -> str:
    """Point this tenant's codes at its SMS/email gateway; returns the new signing secret once."""
    if not _valid_gateway_url(url):
        raise ValidationFailed([{"loc": ["body", "url"],
                                 "msg": "must be an https URL (http only to localhost)"}])
    secret = secrets.token_hex(32)
    sealed = fx.seal(ix.keyring, secret, tenant_id=ix.tenant_id, customer_ref="", kind=GATEWAY_KEY_KIND)
    gw = ix.session.get(OtpGateway, ix.tenant_id)
    if gw is None:
        gw = OtpGateway(tenant_id=ix.tenant_id, url=url, key_version=sealed.key_version,
                        nonce=sealed.nonce, ciphertext=sealed.ciphertext, updated_at=ix.now())
        ix.session.add(gw)
    else:
        gw.url, gw.key_version = url, sealed.key_version
        gw.nonce, gw.ciphertext = sealed.nonce, sealed.ciphertext
        gw.updated_at = ix.now()
    ix.session.flush()
    ix.audit("identity.gateway.set", "ok", reasons=["gateway_configured"],
             details={"host": urlsplit(url).hostname})
    return secret
