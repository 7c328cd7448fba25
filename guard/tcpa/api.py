"""HTTP routes of the outbound-call domain (translation only; the logic is in service.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

from flask import Blueprint, Response, request
from sqlalchemy import func, select

from guard.audit.service import subject_pseudonym
from guard.db import insert_ignore
from guard.errors import Forbidden, ValidationFailed
from guard.tcpa import geo, scrub, service
from guard.tcpa.models import Consent, InternalDnc, LineType, Relationship, Subscription
from guard.tcpa.policy import OutboundPolicy
from guard.tcpa.registry import RegistryIndex, index_for
from guard.tcpa.schemas import (
    MAX_SCRUB,
    AttemptsCreate,
    CallCheck,
    CallDecision,
    ConsentCreate,
    ConsentRead,
    ConsentRevoke,
    DncAdd,
    DncStatus,
    LineTypeSet,
    ListStatus,
    LocalWindow,
    OutcomeCreate,
    Recorded,
    RelationshipCreate,
    ScrubContextFields,
    ScrubJson,
    Subscriptions,
    SubscriptionsRead,
)
from guard.web import RequestContext, endpoint, parse_body, parse_query

bp = Blueprint("calls", __name__)


def _policy(c: RequestContext) -> OutboundPolicy:
    p = c.policies.get("outbound")
    assert isinstance(p, OutboundPolicy)
    return p


def registry_index(c: RequestContext) -> RegistryIndex:
    """This process's registry index (one per runtime)."""
    return index_for(c.rt)


def _e164(raw: str, loc: tuple[str, ...] = ("body", "phone")) -> str:
    try:
        return geo.parse(raw).e164
    except geo.InvalidNumber:
        raise ValidationFailed([{"loc": list(loc), "msg": "not a valid, dialable phone number",
                                 "type": "invalid_number"}]) from None


def _subject(c: RequestContext, e164: str | None, customer_ref: str | None) -> str | None:
    return subject_pseudonym(c.session, index_key=c.rt.keyring.current("subject_index").material,
                             tenant_id=c.tenant_id, identifiers={"phone": e164,
                                                                 "customer_ref": customer_ref},
                             clock=c.clock)


@endpoint(bp, "/calls/check", methods=("POST",), permission="calls.check", body=CallCheck,
          response=CallDecision, action="tcpa.call.check")
def check(c: RequestContext, body: CallCheck) -> CallDecision:
    """Decide whether a number may be called now (or at `at`), with every rule's reason."""
    policy = _policy(c)
    now = c.clock.now()
    at = body.at or now
    if body.record:
        assert c.caller is not None
        if not any(c.policies.roles.allows(r, "calls.record") for r in c.caller.roles):
            raise Forbidden("recording a call needs calls.record", reasons=["role_not_permitted"])
        if abs((at - now).total_seconds()) > policy.record_at_tolerance_seconds:
            raise ValidationFailed([{"loc": ["body", "at"], "type": "record_at_not_now",
                                     "msg": "record: true checks the call being made now; "
                                            "omit `at` or plan without recording"}])
    inp = service.CheckInput(
        phone=body.phone, purpose=body.purpose, method=body.method, at=at, campaign=body.campaign,
        customer_ref=body.customer_ref, debt_ref=body.debt_ref,
        state=body.address.state if body.address else None,
        zip=body.address.zip if body.address else None)
    d = service.check(c.session, tenant_id=c.tenant_id, policy=policy, inp=inp, now=now,
                      index=registry_index(c), record=body.record)
    subject = _subject(c, d.phone_e164, body.customer_ref)
    ev = c.audit("tcpa.call.check", d.decision, reasons=d.reasons, subject=subject, details={
        "purpose": body.purpose, "method": body.method, "campaign": body.campaign,
        "at": at.isoformat(), "planned": body.at is not None, "record": body.record,
        "attempt_id": d.attempt_id, "timezones": d.timezones, "states": d.states,
        "registry_versions": d.registry_versions,
        "next_allowed_at": d.next_allowed_at.isoformat() if d.next_allowed_at else None})
    return CallDecision(
        decision=d.decision, reasons=d.reasons, phone_e164=d.phone_e164,
        local_window=LocalWindow(timezones=d.timezones, opens_at=d.opens_at, closes_at=d.closes_at),
        next_allowed_at=d.next_allowed_at, policy_version=c.policies.version,
        registry_versions=d.registry_versions, attempt_id=d.attempt_id, audit_event=ev.id)


@endpoint(bp, "/calls/attempts", methods=("POST",), permission="calls.record", body=AttemptsCreate,
          response=Recorded, status=201, action="tcpa.attempts.record")
def attempts(c: RequestContext, body: AttemptsCreate) -> Recorded:
    """Record attempts made without a recording check, with their real times."""
    now = c.clock.now()
    for i, item in enumerate(body.attempts):
        e164 = _e164(item.phone, ("body", "attempts", str(i), "phone"))
        if item.at > now + timedelta(minutes=5):
            raise ValidationFailed([{"loc": ["body", "attempts", str(i), "at"],
                                     "msg": "an attempt cannot be in the future", "type": "future"}])
        service.record_attempt(c.session, tenant_id=c.tenant_id, e164=e164,
                               customer_ref=item.customer_ref, debt_ref=item.debt_ref,
                               campaign=item.campaign, purpose=item.purpose, method=item.method,
                               at=item.at)
    c.session.flush()
    ev = c.audit("tcpa.attempts.record", "ok", details={"count": len(body.attempts)})
    return Recorded(count=len(body.attempts), audit_event=ev.id)


@endpoint(bp, "/calls/outcome", methods=("POST",), permission="calls.record", body=OutcomeCreate,
          response=Recorded, status=201, action="tcpa.call.outcome")
def outcome(c: RequestContext, body: OutcomeCreate) -> Recorded:
    """Record a call's disposition (wrong_number voids consent, opt_out adds to the internal list)."""
    e164 = _e164(body.phone)
    row, effects = service.record_outcome(
        c.session, tenant_id=c.tenant_id, e164=e164, outcome=body.outcome,
        customer_ref=body.customer_ref, debt_ref=body.debt_ref, attempt_id=body.attempt_id,
        purpose=body.purpose, at=body.at, clock=c.clock)
    ev = c.audit("tcpa.call.outcome", "ok", reasons=effects,
                 subject=_subject(c, e164, body.customer_ref),
                 details={"outcome": body.outcome, "attempt_id": body.attempt_id})
    return Recorded(id=row.id, effects=effects, audit_event=ev.id)


@endpoint(bp, "/consents", methods=("POST",), permission="consent.write", body=ConsentCreate,
          response=ConsentRead, status=201, action="tcpa.consent.record")
def consent_create(c: RequestContext, body: ConsentCreate) -> ConsentRead:
    """Record prior express (written) consent with its evidence."""
    from guard.ids import new_id

    e164 = _e164(body.phone)
    if body.captured_at > c.clock.now() + timedelta(minutes=5):
        raise ValidationFailed([{"loc": ["body", "captured_at"], "msg": "cannot be in the future",
                                 "type": "future"}])
    row = Consent(id=new_id("cns"), tenant_id=c.tenant_id, phone=e164, customer_ref=body.customer_ref,
                  kind=body.kind, purposes=sorted(set(body.purposes)), source=body.source,
                  text_shown=body.text_shown, channel=body.channel, captured_at=body.captured_at,
                  created_at=c.clock.now(), evidence={"recorded_by": c.caller.actor if c.caller else None})
    c.session.add(row)
    c.session.flush()
    ev = c.audit("tcpa.consent.record", "ok", subject=_subject(c, e164, body.customer_ref),
                 details={"consent_id": row.id, "kind": body.kind, "channel": body.channel,
                          "purposes": row.purposes})
    return ConsentRead(id=row.id, kind=row.kind, purposes=row.purposes, captured_at=row.captured_at,
                       revoked_at=None, voided_at=None, audit_event=ev.id)


@endpoint(bp, "/consents/revoke", methods=("POST",), permission="consent.write", body=ConsentRevoke,
          response=Recorded, action="tcpa.consent.revoke")
def consent_revoke(c: RequestContext, body: ConsentRevoke) -> Recorded:
    """Revoke a number's consents; every later check sees it at once."""
    e164 = _e164(body.phone)
    n = service.revoke_consents(c.session, tenant_id=c.tenant_id, e164=e164, at=c.clock.now())
    ev = c.audit("tcpa.consent.revoke", "ok", subject=_subject(c, e164, None),
                 details={"revoked": n, "channel": body.channel})
    return Recorded(count=n, audit_event=ev.id)


@endpoint(bp, "/dnc", methods=("POST",), permission="consent.write", body=DncAdd, response=Recorded,
          status=201, action="tcpa.dnc.add")
def dnc_add(c: RequestContext, body: DncAdd) -> Recorded:
    """Put a number on the tenant's internal do-not-call list (opt-out, STOP reply)."""
    e164 = _e164(body.phone)
    service.add_internal_dnc(c.session, tenant_id=c.tenant_id, e164=e164, source=body.source,
                             clock=c.clock)
    ev = c.audit("tcpa.dnc.add", "ok", subject=_subject(c, e164, None), details={"source": body.source})
    return Recorded(audit_event=ev.id)


@endpoint(bp, "/relationships", methods=("POST",), permission="consent.write",
          body=RelationshipCreate, response=Recorded, status=201, action="tcpa.relationship.record")
def relationship(c: RequestContext, body: RelationshipCreate) -> Recorded:
    """Record established-business-relationship evidence (a purchase or an inquiry)."""
    from guard.ids import new_id

    e164 = _e164(body.phone)
    row = Relationship(id=new_id("ebr"), tenant_id=c.tenant_id, customer_ref=body.customer_ref,
                       phone=e164, kind=body.kind, at=body.at, created_at=c.clock.now())
    c.session.add(row)
    c.session.flush()
    ev = c.audit("tcpa.relationship.record", "ok", subject=_subject(c, e164, body.customer_ref),
                 details={"relationship_id": row.id, "kind": body.kind})
    return Recorded(id=row.id, audit_event=ev.id)


@endpoint(bp, "/numbers/line-type", methods=("POST",), permission="consent.write", body=LineTypeSet,
          response=Recorded, action="tcpa.line_type.set")
def line_type(c: RequestContext, body: LineTypeSet) -> Recorded:
    """Mark a number landline or wireless (unmarked numbers are treated as wireless)."""
    e164 = _e164(body.phone)
    row = c.session.get(LineType, (c.tenant_id, e164))
    if row is None:
        c.session.add(LineType(tenant_id=c.tenant_id, phone=e164, line_type=body.line_type,
                               updated_at=c.clock.now()))
    else:
        row.line_type = body.line_type
        row.updated_at = c.clock.now()
    c.session.flush()
    ev = c.audit("tcpa.line_type.set", "ok", subject=_subject(c, e164, None),
                 details={"line_type": body.line_type})
    return Recorded(audit_event=ev.id)


@endpoint(bp, "/dnc/subscriptions", methods=("POST",), permission="dnc.manage", body=Subscriptions,
          response=SubscriptionsRead, action="tcpa.dnc.subscribe")
def subscribe(c: RequestContext, body: Subscriptions) -> SubscriptionsRead:
    """Record area codes of the national registry the tenant has subscribed to."""
    for code in body.area_codes:
        insert_ignore(c.session, Subscription, tenant_id=c.tenant_id, area_code=code,
                      created_at=c.clock.now())
    c.audit("tcpa.dnc.subscribe", "ok", details={"area_codes": body.area_codes})
    codes = c.session.execute(select(Subscription.area_code).where(
        Subscription.tenant_id == c.tenant_id).order_by(Subscription.area_code)).scalars().all()
    return SubscriptionsRead(area_codes=list(codes))


@endpoint(bp, "/dnc/status", permission="dnc.manage", response=DncStatus, action="tcpa.dnc.status")
def status(c: RequestContext) -> DncStatus:
    """Each list's size and age (the national list is stale after the policy's 31 days)."""
    lists = service.registry_status(c.session, tenant_id=c.tenant_id, policy=_policy(c),
                                    now=c.clock.now())
    internal = c.session.execute(select(func.count()).select_from(InternalDnc).where(
        InternalDnc.tenant_id == c.tenant_id)).scalar_one()
    return DncStatus(lists=[ListStatus.model_validate(x) for x in lists], internal_count=int(internal))



_SCRUB_MAX_BODY = 64 * 1024 * 1024  # 1,000,000 numbers as JSON or CSV, with room for formatting


def _scrub_input(c: RequestContext) -> tuple[ScrubContextFields, list[str], str]:
    """Numbers and context from a JSON body or a CSV upload (context in the query string)."""
    mimetype = request.mimetype or ""
    if mimetype in ("text/csv", "application/csv"):
        ctx_fields = parse_query(ScrubContextFields)
        assert isinstance(ctx_fields, ScrubContextFields)
        text_body = request.get_data(cache=False).decode("utf-8", "replace")
        rows = [line.split(",", 1)[0].strip().strip('"') for line in text_body.splitlines()]
        if rows and rows[0].lower() in ("phone", "number", "phone_number"):
            rows = rows[1:]
        rows = [r for r in rows if r]
        if not rows or len(rows) > MAX_SCRUB:
            raise ValidationFailed([{"loc": ["body"], "type": "csv_rows",
                                     "msg": f"a CSV scrub takes 1 to {MAX_SCRUB} numbers, one per row"}])
        return ctx_fields, rows, "csv"
    if request.args:
        raise ValidationFailed([{"loc": ["query"], "type": "unexpected",
                                 "msg": "a JSON scrub takes its context in the body"}])
    parsed = parse_body(ScrubJson)
    assert isinstance(parsed, ScrubJson)
    return parsed, list(parsed.numbers), "ndjson"


@endpoint(bp, "/calls/scrub", methods=("POST",), permission="calls.scrub", action="tcpa.call.scrub",
          max_body=_SCRUB_MAX_BODY, response_media_type="application/x-ndjson",
          request_media={"application/json": ScrubJson,
                         "text/csv": {"type": "string", "description": "one number per row; the "
                                      "context (purpose, method, ...) in the query string"}},
          extra_responses={200: "one decision per number (NDJSON, or CSV for a CSV upload), then totals"})
def scrub_list(c: RequestContext) -> Response:
    """Scrub a list of numbers (JSON array or CSV) with the same rules and codes as a check."""
    fields, phones, fmt = _scrub_input(c)
    now = c.clock.now()
    ctx = scrub.ScrubContext(purpose=fields.purpose, method=fields.method, at=fields.at or now,
                             campaign=fields.campaign, debt_ref=fields.debt_ref, state=fields.state,
                             zip=fields.zip)
    result = scrub.scrub(c.session, tenant_id=c.tenant_id, policy=_policy(c), ctx=ctx, phones=phones,
                         now=now, index=registry_index(c), table=scrub.prefix_table(c.rt.extras))
    chunks = scrub.render(result, fmt)
    root = scrub.digest(chunks)
    totals = result.totals()
    ev = c.audit("tcpa.call.scrub", "ok", reasons=[r for r in scrub.REASONS if r in totals], details={
        "count": len(phones), "totals": totals, "registry_versions": result.registry_versions,
        "digest": {"alg": "merkle-sha256", "leaf": f"{scrub.CHUNK_LINES} output lines", "root": root},
        "purpose": fields.purpose, "method": fields.method, "campaign": fields.campaign,
        "at": ctx.at.isoformat(), "format": fmt})
    summary = {"totals": totals, "count": len(phones), "digest": root, "audit_event": ev.id,
               "policy_version": c.policies.version, "registry_versions": result.registry_versions}
    if fmt == "csv":
        head = b"index,phone_e164,decision,reasons\n"
        tail = ("# summary " + json.dumps(summary, separators=(",", ":")) + "\n").encode()
        mimetype = "text/csv"
    else:
        head = b""
        tail = (json.dumps({"summary": summary}, separators=(",", ":")) + "\n").encode()
        mimetype = "application/x-ndjson"

    def stream() -> Iterator[bytes]:
        yield head
        yield from chunks
        yield tail

    # The audit event commits with the request (the wrapper commits before the body streams).
    return Response(stream(), mimetype=mimetype)
