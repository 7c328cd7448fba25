"""Auditor routes: search events, read one, verify the chain, resolve a person to a pseudonym."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint
from flask import Response as FlaskResponse
from sqlalchemy import select

from guard.audit import proofs, service
from guard.audit.models import AuditCheckpoint, AuditEvent
from guard.audit.schemas import (
    CheckpointRead,
    ConsistencyQuery,
    ConsistencyRead,
    EventPage,
    EventQuery,
    EventRead,
    ExportQuery,
    InclusionRead,
    ProofQuery,
    SubjectLookup,
    SubjectRead,
    VerifyRead,
    WitnessesRead,
    WitnessesWrite,
)
from guard.errors import Conflict, NotFound
from guard.web import RequestContext, endpoint

bp = Blueprint("audit", __name__, url_prefix="/audit")


@endpoint(bp, "/events", permission="audit.read", query=EventQuery, response=EventPage,
          action="audit.events.read")
def list_events(c: RequestContext, query: EventQuery) -> EventPage:
    """Search this tenant's audit events (reading the log is itself audited)."""
    rows, next_cursor = service.search_events(c.session, c.tenant_id, query,
                                              page_max=c.policies.audit.page_max)
    c.audit("audit.events.read", "ok", subject=query.subject, details={
        "filters": query.model_dump(mode="json", exclude_none=True, exclude={"limit", "cursor"}),
        "returned": len(rows)})
    return EventPage(events=[EventRead(**service.event_to_api(r)) for r in rows],
                     next_cursor=next_cursor)


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


# ----------------------------------------------------------------------------- verifiable log


def _checkpoint_read(c: RequestContext, cp: AuditCheckpoint) -> CheckpointRead:
    return CheckpointRead(**proofs.checkpoint_to_api(cp, c.rt.keyring),
                          receipts=proofs.receipts(c.session, cp.id))


def _fresh_checkpoint(c: RequestContext) -> AuditCheckpoint:
    """A checkpoint covering everything verified now (verifying the tail first)."""
    res = service.verify(c.session, c.tenant_id, clock=c.clock,
                         budget_seconds=c.rt.settings.audit_verify_budget_seconds)
    if not res.ok:
        raise Conflict(f"the chain is broken at seq {res.first_bad_seq} ({res.problem}); "
                       "no checkpoint is signed over it", code="chain_broken")
    return proofs.create_checkpoint(c.session, c.tenant_id, keyring=c.rt.keyring, clock=c.clock,
                                    verified_through=res.verified_through)


@endpoint(bp, "/checkpoints/latest", permission="audit.read", response=CheckpointRead,
          action="audit.checkpoint.read")
def latest_checkpoint(c: RequestContext) -> CheckpointRead:
    """The newest signed checkpoint of this tenant's log, with witness receipts."""
    cp = proofs.latest_checkpoint(c.session, c.tenant_id)
    if cp is None:
        raise NotFound("no checkpoint yet")
    return _checkpoint_read(c, cp)


@endpoint(bp, "/checkpoints", methods=("POST",), permission="audit.checkpoint",
          response=CheckpointRead, status=201, action="audit.checkpoint.create")
def create_checkpoint(c: RequestContext) -> CheckpointRead:
    """Sign a checkpoint now and deliver it to this tenant's witnesses."""
    cp = _fresh_checkpoint(c)
    c.audit("audit.checkpoint.create", "ok", details={"checkpoint_id": cp.id, "tree_size": cp.tree_size,
                                                      "root_hash": cp.root_hash})
    c.commit()  # the checkpoint is stored before any witness hears of it
    deliveries = proofs.pending_deliveries(c.session, c.tenant_id)
    c.close()
    if deliveries:
        public_key = proofs.public_key_b64(proofs.signing_key(c.rt.keyring)[1].public_key())
        results = proofs.deliver(deliveries, public_key=public_key)
        proofs.record_receipts(c.session, results, c.clock)
        c.commit()
    return _checkpoint_read(c, cp)


@endpoint(bp, "/events/<int:seq>/proof", permission="audit.read", query=ProofQuery,
          response=InclusionRead, action="audit.proof.inclusion")
def inclusion_proof(c: RequestContext, seq: int, query: ProofQuery) -> InclusionRead:
    """RFC 9162 inclusion proof of event `seq` in the tree of `size` (default: latest checkpoint)."""
    size = query.size
    if size is None:
        cp = proofs.latest_checkpoint(c.session, c.tenant_id)
        if cp is None:
            raise NotFound("no checkpoint yet; create one or give size")
        size = cp.tree_size
    return InclusionRead(**proofs.inclusion(c.session, c.tenant_id, seq, size))


@endpoint(bp, "/consistency", permission="audit.read", query=ConsistencyQuery,
          response=ConsistencyRead, action="audit.proof.consistency")
def consistency_proof(c: RequestContext, query: ConsistencyQuery) -> ConsistencyRead:
    """RFC 9162 consistency proof between two tree sizes."""
    return ConsistencyRead(**proofs.consistency(c.session, c.tenant_id, query.from_, query.to))


@endpoint(bp, "/export", permission="audit.export", query=ExportQuery, action="audit.export",
          response_media_type="application/x-ndjson")
def export(c: RequestContext, query: ExportQuery) -> FlaskResponse:
    """Stream a range of events (JSON lines or CSV) with the checkpoint and proof that cover it."""
    cp = _fresh_checkpoint(c)
    a, b = proofs.seq_range(c.session, c.tenant_id, query.from_, query.to, cp.tree_size)
    public_key = proofs.public_key_b64(proofs.signing_key(c.rt.keyring)[1].public_key())
    header = proofs.export_header(c.session, c.tenant_id, cp, a, b, public_key)
    c.audit("audit.export", "ok", details={"from_seq": a, "to_seq": b, "format": query.format,
                                           "checkpoint_id": cp.id})
    sessions, tenant_id = c.rt.sessions, c.tenant_id

    def generate() -> Iterator[str]:
        session = sessions()
        try:
            yield from proofs.render(header, proofs.iter_events(session, tenant_id, a, b), query.format)
        finally:
            session.rollback()
            session.close()

    mimetype = "application/x-ndjson" if query.format == "jsonl" else "text/csv"
    resp = FlaskResponse(generate(), mimetype=mimetype)
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="audit-{tenant_id}-{a}-{b}.{query.format}"')
    return resp


@endpoint(bp, "/witnesses", permission="audit.read", response=WitnessesRead,
          action="audit.witnesses.read")
def get_witnesses(c: RequestContext) -> WitnessesRead:
    """This tenant's checkpoint witnesses."""
    return WitnessesRead(urls=proofs.witnesses(c.session, c.tenant_id))


@endpoint(bp, "/witnesses", methods=("PUT",), permission="audit.witnesses.manage",
          body=WitnessesWrite, response=WitnessesRead, action="audit.witnesses.write",
          requires_actor=True)
def put_witnesses(c: RequestContext, body: WitnessesWrite) -> WitnessesRead:
    """Replace this tenant's checkpoint witnesses."""
    urls = proofs.set_witnesses(c.session, c.tenant_id, body.urls, c.clock)
    c.audit("audit.witnesses.write", "ok", details={"count": len(urls)})
    return WitnessesRead(urls=urls)
