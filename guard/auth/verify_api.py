"""Caller verification routes: enrollment (admin), verifications, factor checks, contact change."""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from guard.auth import verify_service as svc
from guard.auth.notifier import DeliveryFailed, Message, Notifier
from guard.auth.verify_errors import DeliveryUnavailable
from guard.auth.verify_models import Verification
from guard.auth.verify_schemas import (
    AttemptRead,
    CodeCheck,
    CustomerStatusRead,
    FactorChange,
    FactorChanged,
    FactorsPut,
    FactorsRead,
    GatewayPut,
    GatewayRead,
    KbaCheck,
    LockoutList,
    LockoutRead,
    MethodPassed,
    OtpSend,
    OtpSentRead,
    VerificationRead,
    VerificationStart,
)
from guard.errors import ValidationFailed
from guard.web import RequestContext, ctx, endpoint

log = logging.getLogger(__name__)
bp = Blueprint("identity", __name__)
_LIMITED = {429: "Too many attempts (Retry-After says when to try again)"}


def identity_context(c: RequestContext) -> svc.IdentityContext:
    """The identity service context of a request."""
    assert c.caller is not None
    return svc.IdentityContext(session=c.session, clock=c.clock, policies=c.policies,
                               keyring=c.rt.keyring, ir=svc.identity_runtime(c.rt), caller=c.caller)


def request_identity_context() -> svc.IdentityContext:
    """The identity context of the current Flask request (for `require_level`'s callers)."""
    return identity_context(ctx())


def _read(ix: svc.IdentityContext, v: Verification) -> VerificationRead:
    policy = ix.policy
    return VerificationRead(
        id=v.id, customer_ref=v.customer_ref, interaction_id=v.interaction_id, channel=v.channel,
        status=svc.status_of(v, policy, ix.now()), level=v.level,
        methods_available=svc.methods_available(policy),
        methods_passed=[MethodPassed(method=p["method"], at=p["at"]) for p in v.passed or []],
        attempts_remaining=max(0, policy.limits.max_failures_per_verification - v.failures),
        otp_sends_remaining=max(0, policy.otp.max_sends_per_verification - v.otp_sends),
        created_at=v.created_at, expires_at=svc.expires_at(v, policy),
        started_by_key=v.started_key_id, started_by_role=v.started_role)


def _attempt(ix: svc.IdentityContext, a: svc.Attempt) -> AttemptRead:
    return AttemptRead(method=a.method, passed=a.passed, reason=a.reason,
                       attempts_remaining=a.attempts_remaining, verification=_read(ix, a.verification))


def _factors_read(view: svc.FactorsView) -> FactorsRead:
    return FactorsRead(**view.__dict__)


def _deliver(c: RequestContext, notifier: Notifier, message: Message, *, action: str,
             customer_ref: str) -> bool:
    """Send after the request's transaction committed (no network call inside a transaction)."""
    try:
        notifier.send(message, now=c.clock.now())
    except DeliveryFailed as exc:
        log.warning("identity delivery %s failed: %s", message.message_id, exc)
        ok = False
    else:
        ok = True
    # Queued on the request's session after its first commit; the endpoint commits it.
    identity_context(c).audit(action, "ok" if ok else "error", customer_ref=customer_ref,
                              reasons=["delivered" if ok else "delivery_failed"],
                              details={"message_id": message.message_id, "channel": message.channel,
                                       "purpose": message.purpose})
    return ok


# ----------------------------------------------------------------------------- enrollment


@endpoint(bp, "/customers/<customer_ref>/factors", methods=("PUT",), permission="factors.enroll",
          body=FactorsPut, response=FactorsRead, action="identity.factors.enroll", requires_actor=True)
def put_factors(c: RequestContext, customer_ref: str, body: FactorsPut) -> FactorsRead:
    """Enroll (replace) a customer's factors from the tenant's system of record (admin)."""
    ix = identity_context(c)
    data = svc.FactorsIn(
        knowledge=[svc.KnowledgeIn(k.question_id, k.answer) for k in body.knowledge], phone=body.phone,
        email=body.email, totp_secret=body.totp_secret, caller_id_numbers=body.caller_id_numbers,
        reset_lockout=body.reset_lockout)
    return _factors_read(svc.enroll(ix, _ref(customer_ref), data))


@endpoint(bp, "/customers/<customer_ref>/factors", permission="factors.enroll", response=FactorsRead,
          action="identity.factors.read")
def get_factors(c: RequestContext, customer_ref: str) -> FactorsRead:
    """A customer's enrolled factors, masked (admin)."""
    ix = identity_context(c)
    view = svc.factors_view(ix, _ref(customer_ref))
    ix.audit("identity.factors.read", "ok", customer_ref=view.customer_ref, reasons=["factors_read"])
    return _factors_read(view)


@endpoint(bp, "/customers/<customer_ref>/factors/change", methods=("POST",), permission="factors.change",
          body=FactorChange, response=FactorChanged, action="identity.factors.change", requires_actor=True)
def change_factor(c: RequestContext, customer_ref: str, body: FactorChange) -> FactorChanged:
    """Replace the customer's phone or email during a call (fresh level-2, old factor unused)."""
    ix = identity_context(c)
    ref = _ref(customer_ref)
    changed = svc.change_contact(ix, ref, verification_id=body.verification_id,
                                 interaction_id=body.interaction_id, kind=body.kind,
                                 new_value=body.new_value)
    c.commit()
    # The change stands once committed; a failed notice is audited and reported, not hidden.
    notified = _deliver(c, *changed.notice, action="identity.factors.change_notice", customer_ref=ref)
    return FactorChanged(factors=_factors_read(changed.view), kind=changed.kind,
                         old_contact_notified=notified)


@endpoint(bp, "/customers/<customer_ref>/verification-status", permission="verifications.read",
          response=CustomerStatusRead, action="identity.customer.status")
def customer_status(c: RequestContext, customer_ref: str) -> CustomerStatusRead:
    """A customer's failed verifications, cool-down and lock (supervisors)."""
    st = svc.customer_status(identity_context(c), _ref(customer_ref))
    return CustomerStatusRead(**st.__dict__)


@endpoint(bp, "/identity/lockouts", permission="verifications.read", response=LockoutList,
          action="identity.lockouts.read")
def list_lockouts(c: RequestContext) -> LockoutList:
    """Customers whose verifications are in cool-down or locked now (supervisors)."""
    rows = svc.lockouts(identity_context(c))
    return LockoutList(lockouts=[LockoutRead(customer_ref=r.customer_ref, cooldown_until=r.cooldown_until,
                                             cooldowns=r.cooldowns, locked=r.locked_at is not None,
                                             updated_at=r.updated_at) for r in rows])


@endpoint(bp, "/identity/gateway", methods=("PUT",), permission="identity.gateway.manage", body=GatewayPut,
          response=GatewayRead, action="identity.gateway.set", requires_actor=True)
def put_gateway(c: RequestContext, body: GatewayPut) -> GatewayRead:
    """Set this tenant's SMS/email gateway webhook; the signing secret is shown only here."""
    secret = svc.set_gateway(identity_context(c), body.url)
    return GatewayRead(url=body.url, signing_secret=secret, signature_header="Guard-Signature")


# ----------------------------------------------------------------------------- verifications


@endpoint(bp, "/verifications", methods=("POST",), permission="verifications.use", body=VerificationStart,
          response=VerificationRead, status=201, action="identity.verification.start",
          extra_responses=_LIMITED)
def start_verification(c: RequestContext, body: VerificationStart) -> VerificationRead:
    """Start verifying the caller of an interaction (caller-ID evidence only from dialer keys)."""
    ix = identity_context(c)
    data = svc.StartIn(customer_ref=body.customer_ref, interaction_id=body.interaction_id,
                       channel=body.channel, ani=body.ani, stir_shaken=body.stir_shaken)
    # A rate limit raises RateLimited: the shared handler audits it and sets Retry-After.
    return _read(ix, svc.start(ix, data))


@endpoint(bp, "/verifications/<verification_id>", permission="verifications.use", response=VerificationRead,
          action="identity.verification.read")
def get_verification(c: RequestContext, verification_id: str) -> VerificationRead:
    """A verification's level, methods passed (no secrets) and expiry."""
    ix = identity_context(c)
    return _read(ix, svc.load(ix, verification_id))


@endpoint(bp, "/verifications/<verification_id>/kba", methods=("POST",), permission="verifications.use",
          body=KbaCheck, response=AttemptRead, action="identity.kba.check")
def kba(c: RequestContext, verification_id: str, body: KbaCheck) -> AttemptRead:
    """Check answers to knowledge questions."""
    ix = identity_context(c)
    answers = [svc.KnowledgeIn(a.question_id, a.answer) for a in body.answers]
    if len({a.question_id for a in answers}) != len(answers):
        raise ValidationFailed([{"loc": ["body", "answers"], "msg": "question ids must be unique"}])
    return _attempt(ix, svc.check_kba(ix, verification_id, answers))


@endpoint(bp, "/verifications/<verification_id>/otp", methods=("POST",), permission="verifications.use",
          body=OtpSend, response=OtpSentRead, action="identity.otp.send", extra_responses=_LIMITED)
def send_otp(c: RequestContext, verification_id: str, body: OtpSend) -> OtpSentRead | Response:
    """Send a one-time code (valid 10 minutes, single use) to the customer's phone or email."""
    ix = identity_context(c)
    sent = svc.send_otp(ix, verification_id, body.channel)
    c.commit()
    if sent.delivery is not None:
        v = sent.verification
        if not _deliver(c, *sent.delivery, action="identity.otp.delivery", customer_ref=v.customer_ref):
            raise DeliveryUnavailable("the gateway did not accept the code; try again",
                                      reasons=["otp_delivery_failed"])
    return OtpSentRead(verification_id=verification_id, channel=sent.channel, expires_at=sent.expires_at,
                       sends_remaining=sent.sends_remaining)


@endpoint(bp, "/verifications/<verification_id>/otp/check", methods=("POST",),
          permission="verifications.use", body=CodeCheck, response=AttemptRead, action="identity.otp.check")
def check_otp(c: RequestContext, verification_id: str, body: CodeCheck) -> AttemptRead:
    """Check the one-time code the caller read back."""
    ix = identity_context(c)
    return _attempt(ix, svc.check_otp(ix, verification_id, body.code))


@endpoint(bp, "/verifications/<verification_id>/totp", methods=("POST",), permission="verifications.use",
          body=CodeCheck, response=AttemptRead, action="identity.totp.check")
def check_totp(c: RequestContext, verification_id: str, body: CodeCheck) -> AttemptRead:
    """Check a code from the customer's authenticator app."""
    ix = identity_context(c)
    return _attempt(ix, svc.check_totp(ix, verification_id, body.code))


@endpoint(bp, "/verifications/<verification_id>/end", methods=("POST",), permission="verifications.use",
          response=VerificationRead, action="identity.verification.end")
def end_verification(c: RequestContext, verification_id: str) -> VerificationRead:
    """End a verification when the interaction ends."""
    ix = identity_context(c)
    return _read(ix, svc.end(ix, verification_id))


def _ref(customer_ref: str) -> str:
    """Path customer references follow the same rules as body ones."""
    if not 1 <= len(customer_ref) <= 128 or not all(0x21 <= ord(ch) <= 0x7E for ch in customer_ref):
        raise ValidationFailed([{"loc": ["path", "customer_ref"], "msg": "1-128 printable ASCII characters"}])
    return customer_ref


__all__ = ["bp", "identity_context", "request_identity_context"]
