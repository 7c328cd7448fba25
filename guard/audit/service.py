"""Append, seal, verify and prune the per-tenant audit hash chain; subject pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import phonenumbers
from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    String,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from guard.audit.models import AuditEvent, AuditHead, AuditWatermark, Subject, SubjectIdentifier
from guard.audit.schemas import EventQuery
from guard.clock import Clock
from guard.context import Caller
from guard.db import insert_ignore
from guard.errors import ValidationFailed
from guard.ids import new_id
from guard.metrics import notify_sealed
from guard.models import PolicyVersion
from guard.policy import PolicySet, canonical_json

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SYSTEM_TENANT_ID = "ten_system"
Outcome = Literal["allow", "deny", "ok", "error"]
_PENDING = "guard_audit_pending"
_POLICIES = "guard_audit_policies"

# The columns an event is served with, in canonical order; the hash covers exactly these.
SERVED = ("id", "tenant_id", "seq", "ts", "key_id", "role", "actor", "action", "outcome",
          "reasons", "policy_version", "request_id", "subject", "details")

# Keys that must never appear in details: the values they name are secrets or direct identifiers.
_FORBIDDEN_KEYS = re.compile(
    r"^(pan|card_?number|number|cvc|cvv|cvv2|otp|code|answer|answers|kba_answer|phone|email|"
    r"password|secret|track|pin)$", re.I)
_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)")


@dataclass
class PendingEvent:
    """An event queued on a session; it gets its seq and hash when the transaction commits."""

    id: str
    tenant_id: str
    ts: datetime
    key_id: str | None
    role: str | None
    actor: str | None
    action: str
    outcome: str
    reasons: list[str]
    policy_version: str | None
    request_id: str | None
    subject: str | None
    details: dict[str, Any]
    seq: int | None = None
    hash: str | None = None


def append(
    session: Session,
    *,
    caller: Caller,
    action: str,
    outcome: Outcome,
    clock: Clock,
    reasons: Sequence[str] = (),
    policy: PolicySet | None = None,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> PendingEvent:
    """Queue an audit event on `session`; it is chained and written at commit, or not at all."""
    event = PendingEvent(
        id=new_id("evt"),
        tenant_id=caller.tenant_id,
        ts=clock.now().astimezone(UTC),
        key_id=caller.key_id,
        role=caller.role,
        actor=caller.actor,
        action=action,
        outcome=outcome,
        reasons=list(reasons),
        policy_version=policy.version if policy else None,
        request_id=caller.request_id,
        subject=subject,
        details=scrub_details(dict(details or {})),
    )
    session.info.setdefault(_PENDING, []).append(event)
    if policy is not None:
        session.info.setdefault(_POLICIES, {})[policy.version] = policy
    return event


def scrub_details(details: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: drop secret-named keys and mask card-number-like digit runs."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        if _FORBIDDEN_KEYS.match(str(key)):
            log.warning("audit details key %r dropped: it may hold a secret", key)
            continue
        out[str(key)] = _scrub_value(value)
    return out


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        from guard.pci.redact import mask_text

        # The redaction detector (typed or spoken PANs, CVCs, SSNs), then any long digit run.
        return _DIGIT_RUN.sub("[redacted]", mask_text(value))
    if isinstance(value, dict):
        return scrub_details(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, float):
        # Floats have no single canonical text form across databases; keep the chain stable.
        return repr(value)
    return value


def discard_pending(session: Session) -> None:
    """Forget queued events (after a rollback: the action they describe did not happen)."""
    session.info.pop(_PENDING, None)
    session.info.pop(_POLICIES, None)


_stored_versions: set[str] = set()


def _store_policy_versions(session: Session, policies: Mapping[str, PolicySet], now: datetime) -> None:
    for version, pset in policies.items():
        if version in _stored_versions:
            continue
        # Another process may store the same version at the same moment: insert-or-ignore.
        insert_ignore(session, PolicyVersion, version=version, content=dict(pset.content),
                      first_used_at=now)
        _stored_versions.add(version)


def seal_pending(session: Session) -> list[PendingEvent]:
    """Chain and insert queued events; takes each chain-head lock as the last step before commit."""
    pending: list[PendingEvent] = session.info.pop(_PENDING, [])
    policies: dict[str, PolicySet] = session.info.pop(_POLICIES, {})
    if not pending:
        return []
    session.flush()
    if policies:
        _store_policy_versions(session, policies, pending[0].ts)
    by_tenant: dict[str, list[PendingEvent]] = {}
    for ev in pending:
        by_tenant.setdefault(ev.tenant_id, []).append(ev)
    rows: list[dict[str, Any]] = []
    # Lock heads in a fixed order so two transactions touching two chains never deadlock.
    for tenant_id in sorted(by_tenant):
        seq, prev = _lock_head(session, tenant_id)
        for ev in by_tenant[tenant_id]:
            seq += 1
            ev.seq = seq
            row = _texts({k: getattr(ev, k) for k in SERVED})
            ev.hash = row["hash"] = _hash_texts(prev, row)
            row["ts"] = ev.ts
            prev = ev.hash
            rows.append(row)
        session.execute(update(AuditHead).where(AuditHead.tenant_id == tenant_id)
                        .values(seq=seq, hash=prev))
    session.execute(insert(AuditEvent), rows)
    notify_sealed(session, pending)
    return pending


def _lock_head(session: Session, tenant_id: str) -> tuple[int, str]:
    stmt = select(AuditHead.seq, AuditHead.hash).where(AuditHead.tenant_id == tenant_id)
    row = session.execute(stmt.with_for_update()).one_or_none()
    if row is None:
        ensure_head(session, tenant_id)
        row = session.execute(stmt.with_for_update()).one()
    return int(row[0]), str(row[1])


def ensure_head(session: Session, tenant_id: str) -> None:
    """Create a tenant's chain head if it does not exist (idempotent, race-safe)."""
    insert_ignore(session, AuditHead, tenant_id=tenant_id, seq=0, hash=GENESIS)


def format_ts(ts: datetime | None) -> str | None:
    """The one text form of an event time: UTC, microseconds, Z."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_dict(ev: PendingEvent | AuditEvent | Row[Any]) -> dict[str, Any]:
    d = {k: getattr(ev, k) for k in SERVED}
    d["ts"] = format_ts(d["ts"])
    return d


def _texts(event: Mapping[str, Any]) -> dict[str, Any]:
    """Served fields as stored: JSON-valued ones as canonical JSON text, times formatted."""
    out = dict(event)
    for k in ("reasons", "details"):
        v = out.get(k)
        if v is not None and not isinstance(v, str):
            out[k] = canonical_json(v).decode()
    if isinstance(out.get("ts"), datetime):
        out["ts"] = format_ts(out["ts"])
    return out


def canonical(event: Mapping[str, Any]) -> bytes:
    """The canonical encoding of the served fields, in SERVED order, each as `len:text` (`~` if null).

    A length-prefixed join needs no escaping and no JSON parsing, so the database can build
    the same bytes in SQL (`canonical_sql`) and verification stays fast.
    """
    parts = []
    for k in SERVED:
        v = event[k]
        if v is None:
            parts.append("~")
        else:
            s = str(v)
            parts.append(f"{len(s)}:{s}")
    return "".join(parts).encode()


def _hash_texts(prev_hash: str, texts: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(texts)).hexdigest()


def chain_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """hash = SHA-256(prev_hash || canonical(event)), hex (JSON-valued fields may be objects)."""
    return _hash_texts(prev_hash, _texts(event))


def event_to_api(ev: AuditEvent | Row[Any]) -> dict[str, Any]:
    """The served form of an event (the very fields the hash covers, plus the hash)."""
    d = _event_dict(ev)
    for k in ("reasons", "details"):
        if isinstance(d[k], str):
            d[k] = json.loads(d[k])
    d["hash"] = ev.hash
    d["pruned"] = ev.pruned_at is not None
    return d


def canonical_sql(dialect: str) -> ColumnElement[str]:
    """The database's own rendering of `canonical` for a row of audit_events (the same bytes).

    `coalesce(length(x) || ':' || x, '~')` works because `||` with NULL is NULL on both
    databases; it is several times cheaper for PostgreSQL than CASE with casts. The time
    always renders as 27 characters (`format_ts`).
    """
    ts = ("to_char(timezone('UTC', audit_events.ts), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
          if dialect == "postgresql" else "(replace(audit_events.ts, ' ', 'T') || 'Z')")
    parts = []
    for k in SERVED:
        if k == "ts":
            parts.append(f"coalesce('27:' || {ts}, '~')")
        elif k == "seq":
            parts.append("coalesce(length(CAST(audit_events.seq AS TEXT)) || ':' || audit_events.seq, '~')")
        else:
            parts.append(f"coalesce(length(audit_events.{k}) || ':' || audit_events.{k}, '~')")
    return literal_column(" || ".join(parts), String())


# ----------------------------------------------------------------------------- search


def search_events(session: Session, tenant_id: str, query: EventQuery,
                  *, page_max: int) -> tuple[list[AuditEvent], str | None]:
    """One page of a tenant's events matching `query`, oldest first, and the next cursor."""
    limit = min(query.limit, page_max)
    after = 0
    if query.cursor:
        if not query.cursor.isdigit():
            raise ValidationFailed([{"loc": ["query", "cursor"], "msg": "not a cursor from this API"}])
        after = int(query.cursor)
    stmt = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > after)
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
    rows = list(session.execute(stmt.order_by(AuditEvent.seq).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, str(rows[-1].seq) if more and rows else None


# ----------------------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    """Outcome of walking one tenant's chain."""

    tenant_id: str
    ok: bool
    checked: int = 0
    head_seq: int = 0
    verified_through: int = 0
    complete: bool = True
    first_bad_seq: int | None = None
    problem: str | None = None  # edited | deleted | inserted | reordered | truncated
    message: str | None = None
    elapsed_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


_COLS = [getattr(AuditEvent, c) for c in (*SERVED, "hash", "pruned_at")]


def _rows(session: Session, tenant_id: str, after: int, prev: str, upto: int,
          batch: int) -> Iterator[tuple[int, str, bool, bool]]:
    """(seq, hash, pruned, ok): ok = the row's hash is SHA-256(previous row's hash || canonical).

    PostgreSQL checks each row itself (sha256 over lag(hash) and the canonical text it
    renders); SQLite has no sha256, so Python hashes the canonical text SQLite renders. Either
    way "previous" means the previous row as stored.
    """
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    canon = canonical_sql(conn.dialect.name)
    pruned = AuditEvent.pruned_at.is_not(None)
    last = after
    while True:
        where = (AuditEvent.tenant_id == tenant_id, AuditEvent.seq > last, AuditEvent.seq <= upto)
        if postgres:
            prev_hash = func.coalesce(func.lag(AuditEvent.hash).over(order_by=AuditEvent.seq),
                                      literal(prev))
            digest = func.sha256(func.decode(prev_hash, "hex").op("||")(func.convert_to(canon, "UTF8")))
            check: ColumnElement[Any] = or_(pruned, func.encode(digest, "hex") == AuditEvent.hash)
        else:
            check = canon
        rows = conn.execute(select(AuditEvent.seq, AuditEvent.hash, pruned, check)
                            .where(*where).order_by(AuditEvent.seq).limit(batch)).all()
        if not rows:
            return
        for seq, hsh, is_pruned, verdict in rows:
            if postgres:
                ok = bool(verdict)
            else:
                ok = bool(is_pruned) or \
                    hashlib.sha256(bytes.fromhex(prev) + str(verdict).encode()).hexdigest() == hsh
            yield seq, hsh, bool(is_pruned), ok
            prev = hsh
        last = rows[-1][0]


def _full_rows(session: Session, tenant_id: str, seqs: list[int]) -> dict[int, Row[Any]]:
    rows = session.execute(select(*_COLS).where(AuditEvent.tenant_id == tenant_id,
                                                AuditEvent.seq.in_(seqs))).all()
    return {r.seq: r for r in rows}


def verify(
    session: Session,
    tenant_id: str,
    *,
    clock: Clock,
    full: bool = False,
    budget_seconds: float | None = None,
    batch: int = 20000,
    save_watermark: bool = True,
) -> VerifyResult:
    """Walk the chain from the watermark (or from the start with `full`) to the head."""
    started = time.monotonic()
    head = session.execute(select(AuditHead.seq, AuditHead.hash)
                           .where(AuditHead.tenant_id == tenant_id)).one_or_none()
    head_seq, head_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    result = VerifyResult(tenant_id=tenant_id, ok=True, head_seq=head_seq)
    start_seq, prev = 0, GENESIS
    wm = None if full else session.get(AuditWatermark, tenant_id)
    if wm is not None and wm.seq <= head_seq:
        anchor = session.execute(select(AuditEvent.hash).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.seq == wm.seq)).scalar_one_or_none()
        if anchor != wm.hash:
            return _bad(result, wm.seq, "edited" if anchor else "deleted",
                        f"event {wm.seq} no longer matches the verified watermark", started)
        start_seq, prev = wm.seq, wm.hash
    result.verified_through = start_seq
    pos = start_seq
    if session.get_bind().dialect.name == "postgresql":
        pos, prev = _pg_fast_walk(session, tenant_id, pos, prev, head_seq, batch, result,
                                  started, budget_seconds)
        if not result.complete:
            return _finish(session, result, tenant_id, start_seq, prev, clock, save_watermark, started)
    # Row by row: all of SQLite's walk, and on PostgreSQL only the batch where something is wrong.
    expected = pos + 1
    prev_prev = GENESIS if pos <= 1 else session.execute(select(AuditEvent.hash).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.seq == pos - 1)).scalar_one_or_none() or GENESIS
    prev_pruned = pos > 0 and bool(session.execute(select(AuditEvent.pruned_at.is_not(None)).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.seq == pos)).scalar_one_or_none())
    for seq, hsh, pruned, ok in _rows(session, tenant_id, pos, prev, head_seq, batch):
        if seq != expected:
            if seq > expected:
                return _bad(result, expected, "deleted", f"seq {expected} is missing", started)
            return _bad(result, seq, "inserted", f"seq {seq} appears twice", started)
        if not ok:
            if prev_pruned:
                # A pruned event is trusted only as far as its successor chains from its hash.
                return _bad(result, seq - 1, "edited", f"pruned event {seq - 1}'s hash was changed",
                            started)
            around = _full_rows(session, tenant_id, [seq, seq + 1])
            kind, bad = _classify(prev_prev, prev, around[seq], around.get(seq + 1))
            return _bad(result, bad, kind, f"event {bad} breaks the chain ({kind})", started)
        prev_prev, prev, prev_pruned = prev, hsh, pruned
        expected += 1
        result.checked += 1
        result.verified_through = seq
        if budget_seconds is not None and time.monotonic() - started > budget_seconds:
            result.complete = seq >= head_seq
            break
    if result.complete and result.verified_through != head_seq:
        return _bad(result, result.verified_through + 1, "deleted",
                    f"chain ends at {result.verified_through} but its head says {head_seq}", started)
    if result.complete and head_seq and prev != head_hash:
        return _bad(result, head_seq, "edited", "the last event does not match the chain head", started)
    if result.complete:
        beyond = session.execute(select(AuditEvent.seq).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.seq > head_seq)
            .order_by(AuditEvent.seq).limit(1)).scalar_one_or_none()
        if beyond is not None:
            return _bad(result, beyond, "inserted", f"event {beyond} lies beyond the chain head",
                        started)
    return _finish(session, result, tenant_id, start_seq, prev, clock, save_watermark, started)


def _finish(session: Session, result: VerifyResult, tenant_id: str, start_seq: int, prev: str,
            clock: Clock, save_watermark: bool, started: float) -> VerifyResult:
    if save_watermark and result.ok and result.verified_through > start_seq:
        _save_watermark(session, tenant_id, result.verified_through, prev, clock.now())
    result.elapsed_seconds = time.monotonic() - started
    return result


def _pg_range_check(engine: Engine, tenant_id: str, lo: int, hi: int, prev: str) -> tuple[int, int | None]:
    """PostgreSQL checks seqs lo+1..hi itself: (row count, first seq whose hash is wrong)."""
    canon = canonical_sql("postgresql")
    pruned = AuditEvent.pruned_at.is_not(None)
    prev_hash = func.coalesce(func.lag(AuditEvent.hash).over(order_by=AuditEvent.seq), literal(prev))
    digest = func.sha256(func.decode(prev_hash, "hex").op("||")(func.convert_to(canon, "UTF8")))
    inner = select(AuditEvent.seq.label("seq"),
                   or_(pruned, func.encode(digest, "hex") == AuditEvent.hash).label("ok")) \
        .where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > lo, AuditEvent.seq <= hi).subquery()
    with engine.connect() as conn:
        count, bad = conn.execute(select(func.count(), func.min(inner.c.seq).filter(
            inner.c.ok.is_(False)))).one()
    return int(count), bad


def _pg_fast_walk(session: Session, tenant_id: str, pos: int, prev: str, head_seq: int, batch: int,
                  result: VerifyResult, started: float,
                  budget_seconds: float | None) -> tuple[int, str]:
    """Let PostgreSQL check whole seq ranges, two at a time, and answer with counts only.

    A range's first row chains from the stored hash before it, which the previous range
    checks, so ranges are independent and run on both cores at once. The first range with
    anything wrong is left to the row-by-row walk, which names the problem.
    Returns (last seq of the clean prefix, its hash).
    """
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    ranges = [(lo, min(lo + batch, head_seq)) for lo in range(pos, head_seq, batch)]
    if not ranges:
        return pos, prev
    bounds = [lo for lo, _ in ranges[1:]] + [ranges[-1][1]]
    hashes = {seq: h for seq, h in session.execute(select(AuditEvent.seq, AuditEvent.hash).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.seq.in_(bounds)))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_pg_range_check, engine, tenant_id, lo, hi,
                               prev if lo == pos else hashes.get(lo, GENESIS)) for lo, hi in ranges]
        try:
            for (lo, hi), fut in zip(ranges, futures, strict=True):
                count, bad = fut.result()
                if count != hi - lo or bad is not None or hi not in hashes:
                    return lo, prev
                prev = hashes[hi]
                result.checked += count
                result.verified_through = pos = hi
                if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                    result.complete = pos >= head_seq
                    break
        finally:
            for fut in futures:
                fut.cancel()
    return pos, prev


def _classify(prev_prev: str, prev: str, row: Row[Any], nxt: Row[Any] | None) -> tuple[str, int]:
    """Name what most likely happened where the chain breaks, and the first bad seq."""
    here = _event_dict(row)
    # This row's stored hash fits one position earlier: the row before it was inserted.
    if chain_hash(prev_prev, {**here, "seq": row.seq - 1}) == row.hash:
        return "inserted", row.seq - 1
    if nxt is not None:
        there = _event_dict(nxt)
        # The next row belongs here: either the two swapped places (this row then belongs
        # right after it) or this row was inserted in front of it.
        if chain_hash(prev, {**there, "seq": row.seq}) == nxt.hash:
            swapped = chain_hash(nxt.hash, {**here, "seq": row.seq + 1}) == row.hash
            return ("reordered" if swapped else "inserted"), row.seq
        # The next row chains from this row's hash but one seq higher: rows after a deleted
        # one were renumbered down.
        if chain_hash(row.hash, {**there, "seq": nxt.seq + 1}) == nxt.hash:
            return "deleted", row.seq
    return "edited", row.seq


def _bad(result: VerifyResult, seq: int, kind: str, message: str, started: float) -> VerifyResult:
    result.ok = False
    result.first_bad_seq = seq
    result.problem = kind
    result.message = message
    result.elapsed_seconds = time.monotonic() - started
    return result


def _save_watermark(session: Session, tenant_id: str, seq: int, hsh: str, now: datetime) -> None:
    wm = session.get(AuditWatermark, tenant_id)
    if wm is None:
        session.add(AuditWatermark(tenant_id=tenant_id, seq=seq, hash=hsh, verified_at=now))
    elif seq > wm.seq:
        wm.seq, wm.hash, wm.verified_at = seq, hsh, now
    session.flush()


def tenants_with_chains(session: Session) -> list[str]:
    """Every tenant that has an audit chain."""
    return list(session.execute(select(AuditHead.tenant_id).order_by(AuditHead.tenant_id)).scalars())


# ----------------------------------------------------------------------------- pruning


def prune(session: Session, tenant_id: str, *, before: datetime, limit: int = 1000) -> tuple[int, int | None]:
    """Drop the bodies of up to `limit` verified events older than `before`; keep seq and hash.

    Only events at or below the verification watermark are pruned: a body is dropped only
    after its hash was checked, so the chain stays provable over pruned ranges.
    Returns (count pruned, highest seq pruned).
    """
    wm = session.get(AuditWatermark, tenant_id)
    if wm is None:
        return 0, None
    seqs = list(session.execute(
        select(AuditEvent.seq).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.pruned_at.is_(None),
            AuditEvent.ts < before, AuditEvent.seq <= wm.seq)
        .order_by(AuditEvent.seq).limit(limit)).scalars())
    if not seqs:
        return 0, None
    body = {c: None for c in SERVED if c not in ("id", "tenant_id", "seq")}
    session.execute(update(AuditEvent).where(AuditEvent.tenant_id == tenant_id,
                                             AuditEvent.seq.in_(seqs))
                    .values(pruned_at=datetime.now(UTC), **body))
    return len(seqs), seqs[-1]


# ----------------------------------------------------------------------------- subjects

SubjectKind = Literal["customer_ref", "phone", "email"]


def normalize_identifier(kind: str, value: str) -> str:
    """Canonical text of an identifier so that the same person hashes the same way."""
    value = value.strip()
    if kind == "phone":
        try:
            num = phonenumbers.parse(value, "US")
        except phonenumbers.NumberParseException:
            return re.sub(r"\D", "", value)
        return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
    if kind == "email":
        return value.lower()
    return value


def identifier_index(index_key: bytes, tenant_id: str, kind: str, value: str) -> str:
    """Keyed hash of an identifier: lets Guard find a subject without storing the identifier."""
    msg = f"{tenant_id}\x00{kind}\x00{normalize_identifier(kind, value)}".encode()
    return hmac.new(index_key, msg, hashlib.sha256).hexdigest()


def pseudonym(secret: bytes) -> str:
    """The erasable pseudonym events carry: HMAC(subject secret)."""
    return "sp_" + hmac.new(secret, b"guard-audit-subject", hashlib.sha256).hexdigest()[:40]


def subject_pseudonym(
    session: Session,
    *,
    index_key: bytes,
    tenant_id: str,
    identifiers: Mapping[str, str | None],
    clock: Clock,
    create: bool = True,
) -> str | None:
    """Find (or create) the subject any of `identifiers` names, link the rest, return its pseudonym."""
    given = {k: v for k, v in identifiers.items() if v}
    if not given:
        return None
    hashes = {k: identifier_index(index_key, tenant_id, k, v) for k, v in given.items()}
    links = session.execute(select(SubjectIdentifier).where(
        SubjectIdentifier.tenant_id == tenant_id,
        SubjectIdentifier.index_hash.in_(list(hashes.values())))).scalars().all()
    subject: Subject | None = None
    for link in links:
        subject = session.get(Subject, link.subject_id)
        if subject is not None:
            break
    if subject is None or subject.secret is None:
        if not create:
            return None
        subject = Subject(id=new_id("sub"), tenant_id=tenant_id, secret=secrets.token_bytes(32),
                          created_at=clock.now())
        session.add(subject)
        session.flush()
    known = {link.index_hash for link in links}
    for kind, h in hashes.items():
        if h not in known:
            session.add(SubjectIdentifier(tenant_id=tenant_id, index_hash=h, kind=kind,
                                          subject_id=subject.id))
    session.flush()
    assert subject.secret is not None
    return pseudonym(subject.secret)


def erase_subject(session: Session, *, index_key: bytes, tenant_id: str,
                  identifiers: Mapping[str, str | None], clock: Clock) -> int:
    """Crypto-shred: delete the subject's secret and identifiers; events keep verifying."""
    given = {k: v for k, v in identifiers.items() if v}
    hashes = [identifier_index(index_key, tenant_id, k, v) for k, v in given.items()]
    subject_ids = set(session.execute(select(SubjectIdentifier.subject_id).where(
        SubjectIdentifier.tenant_id == tenant_id,
        SubjectIdentifier.index_hash.in_(hashes))).scalars())
    for sid in subject_ids:
        session.execute(delete(SubjectIdentifier).where(SubjectIdentifier.subject_id == sid))
        session.execute(update(Subject).where(Subject.id == sid)
                        .values(secret=None, erased_at=clock.now()))
    session.flush()
    return len(subject_ids)
