"""Auditor routes: search events, read one, verify the chain, resolve a person to a pseudonym."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from guard.audit import service
from guard.audit.models import AuditEvent
from guard.audit.schemas import (
    EventPage,
    EventQuery,
    EventRead,
    SubjectLookup,
    SubjectRead,
    VerifyRead,
)
from guard.errors import NotFound, ValidationFailed
from guard.web import RequestContext, endpoint

bp = Blueprint("audit", __name__, url_prefix="/audit")


@endpoint(bp, "/events", permission="audit.read", query=EventQuery, response=EventPage,
          action="audit.events.read")
def list_events(c: RequestContext, query: EventQuery) -> EventPage:
    """Search this tenant's audit events (reading the log is itself audited)."""
    limit = min(query.limit, c.policies.audit.page_max)
    after = 0
    if query.cursor:
        if not query.cursor.isdigit():
            raise ValidationFailed([{"loc": ["query", "cursor"], "msg": "not a cursor from this API"}])
        after = int(query.cursor)
    stmt = select(AuditEvent).where(AuditEvent.tenant_id == c.tenant_id, AuditEvent.seq > after)
    if query.from_:
        stmt = stmt.where(AuditEvent.ts >= query.from_)
    if query.to:
        stmt = stmt.where(AuditEvent.ts < query.to)
    if query.action:
        stmt = stmt.where(AuditEvent.action.startswith(query.action[:-1], autoescape=True)
                          if query.action.endswith("*") else AuditEvent.action == query.action)
    for col, value in ((AuditEvent.actor, query.actor), (AuditEvent.outcome, query.outcome),
                       (AuditEvent.subject, query.subject), (AuditEvent.key_id, query.key_id)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows = list(c.session.execute(stmt.order_by(AuditEvent.seq).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    c.audit("audit.events.read", "ok", subject=query.subject, details={
        "filters": query.model_dump(mode="json", exclude_none=True, exclude={"limit", "cursor"}),
        "returned": len(rows)})
    return EventPage(events=[EventRead(**service.event_to_api(r)) for r in rows],
                     next_cursor=str(rows[-1].seq) if more and rows else None)


@endpoint(bp, "/events/<event_id>", permission="audit.read", response=EventRead,
          action="audit.event.read")
def get_event(c: RequestContext, event_id: str) -> EventRead:
    """One audit event of this tenant by id."""
    row = c.session.execute(select(AuditEvent).where(
        AuditEvent.id == event_id, AuditEvent.tenant_id == c.tenant_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no audit event {event_id!r}")
    c.audit("audit.event.read", "ok", details={"event_id": event_id})
    return EventRead(**service.event_to_api(row))


@endpoint(bp, "/verify", permission="audit.verify", response=VerifyRead, action="audit.verify")
def verify(c: RequestContext) -> VerifyRead:
    """Verify this tenant's chain from the last watermark, within a time budget."""
    res = service.verify(c.session, c.tenant_id, clock=c.clock,
                         budget_seconds=c.rt.settings.audit_verify_budget_seconds)
    c.audit("audit.verify", "ok" if res.ok else "error",
            reasons=[] if res.ok else [f"chain_{res.problem}"],
            details={"verified_through": res.verified_through, "head_seq": res.head_seq,
                     "complete": res.complete, "first_bad_seq": res.first_bad_seq})
    return VerifyRead(tenant_id=res.tenant_id, ok=res.ok, complete=res.complete,
                      head_seq=res.head_seq, verified_through=res.verified_through,
                      checked=res.checked, first_bad_seq=res.first_bad_seq,
                      problem=res.problem, message=res.message)


@endpoint(bp, "/subjects/resolve", methods=("POST",), permission="audit.resolve_subject",
          body=SubjectLookup, response=SubjectRead, action="audit.subject.resolve")
def resolve_subject(c: RequestContext, body: SubjectLookup) -> SubjectRead:
    """The pseudonym under which a person's events are filed (null if none or erased)."""
    pseud = service.subject_pseudonym(
        c.session, index_key=c.rt.keyring.current("subject_index").material,
        tenant_id=c.tenant_id, identifiers=body.model_dump(), clock=c.clock, create=False)
    c.audit("audit.subject.resolve", "ok", subject=pseud,
            details={"by": sorted(k for k, v in body.model_dump().items() if v),
                     "found": pseud is not None})
    return SubjectRead(subject=pseud)
