"""The outbound-call decision and the records it reads: consents, relationships, attempts.

`check()` loads everything one number needs once, then evaluates pure rules at the call's time
(and at later candidate times for `next_allowed_at`). Every rule that denies adds its code; an
error inside a rule denies with `rule_error`, never allows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from guard.clock import Clock
from guard.db import insert_ignore
from guard.ids import new_id
from guard.tcpa import geo
from guard.tcpa.models import (
    CallAttempt,
    CallOutcome,
    Consent,
    InternalDnc,
    LineType,
    RegistryVersion,
    Relationship,
    Subscription,
)
from guard.tcpa.policy import WEEKDAYS, Cap, OutboundPolicy, Purpose, StateRule, Window
from guard.tcpa.registry import RegistryIndex, active_versions

log = logging.getLogger(__name__)

Method = Literal["manual", "autodialer", "prerecorded", "sms"]
OutcomeKind = Literal["connected", "no_answer", "voicemail", "wrong_number", "opt_out", "disconnected"]
# Reasons a later time can cure (next_allowed_at is computed only when every reason is one).
TEMPORAL = frozenset({"outside_calling_hours", "restricted_day", "frequency_cap", "reg_f_7in7",
                      "reg_f_after_conversation"})
_HORIZON = timedelta(days=15)
# One order for every answer (single check and scrub list reasons the same way).
REASON_ORDER = ("invalid_number", "unsupported_jurisdiction", "timezone_unknown", "outside_calling_hours",
                "restricted_day", "holiday_data_missing", "internal_dnc", "litigator", "registry_stale",
                "registry_not_subscribed", "national_dnc", "state_dnc", "no_consent", "consent_revoked",
                "reassigned_number", "frequency_cap", "reg_f_7in7", "reg_f_after_conversation",
                "rule_error")
_RANK = {r: i for i, r in enumerate(REASON_ORDER)}


def ordered(reasons: Iterable[str]) -> list[str]:
    """Reasons without duplicates, in REASON_ORDER."""
    return sorted(set(reasons), key=lambda r: _RANK.get(r, len(_RANK)))


@dataclass(frozen=True)
class CheckInput:
    """What the dialer asks about."""

    phone: str
    purpose: Purpose
    method: Method
    at: datetime
    campaign: str | None = None
    customer_ref: str | None = None
    debt_ref: str | None = None
    state: str | None = None
    zip: str | None = None


@dataclass
class Decision:
    """The answer and what it was based on."""

    decision: Literal["allow", "deny"]
    reasons: list[str]
    phone_e164: str | None
    timezones: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    next_allowed_at: datetime | None = None
    registry_versions: dict[str, str] = field(default_factory=dict)
    attempt_id: str | None = None


@dataclass(frozen=True)
class _Attempt:
    at: datetime
    phone: str
    person_key: str
    debt_ref: str | None
    campaign: str | None
    purpose: str
    method: str


@dataclass
class _Facts:
    """Everything the rules read about one number, loaded once."""

    num: geo.ParsedNumber
    zones: list[str]
    states: list[str]
    person_key: str
    attempts: list[_Attempt]
    conversations: list[datetime]


def person_key(customer_ref: str | None, e164: str) -> str:
    """Caps count per person: the customer reference, else the number."""
    return f"c:{customer_ref}" if customer_ref else f"p:{e164}"


def _add(reasons: list[str], code: str) -> None:
    if code not in reasons:
        reasons.append(code)


# ----------------------------------------------------------------------------- location


def _locate(policy: OutboundPolicy, num: geo.ParsedNumber, state: str | None,
            zip_code: str | None) -> tuple[list[str], list[str]]:
    """Candidate time zones and applicable states of the called party."""
    addr_zones: set[str] = set()
    states: set[str] = set()
    zip_hit = geo.zip_info(zip_code) if zip_code else None
    if zip_hit is not None:
        states.add(zip_hit[0])
        addr_zones.add(zip_hit[1])
    if state:
        states.add(state.upper())
        if zip_hit is None or zip_hit[0] != state.upper():
            # A ZIP narrows the state's zones only when it lies in that state.
            addr_zones |= geo.state_zones(state)
    if num.state:
        states.add(num.state)
    zones = set(num.zones) | addr_zones
    return sorted(zones), sorted(states)


def _holidays(policy: OutboundPolicy, st: str, year: int) -> frozenset[date]:
    extra = {h.date for h in policy.extra_holidays if st in h.states and h.date.year == year}
    return geo.state_holidays(st, year) | extra


def _day_window(policy: OutboundPolicy, states: Sequence[str], purpose: str, local_day: date,
                reasons: list[str]) -> tuple[time, time | None]:
    """The intersected window of one local day; adds restricted_day / holiday_data_missing."""
    start, end = time(0), None
    if purpose in policy.federal_window_purposes:
        start, end = policy.federal_window.start, policy.federal_window.end
    weekday = WEEKDAYS[local_day.weekday()]
    for st in states:
        rule: StateRule | None = policy.states.get(st)
        if rule is None or purpose not in rule.purposes:
            continue
        w: Window | Literal["closed"] | None = rule.window_for(weekday)
        if w == "closed":
            _add(reasons, "restricted_day")
        elif w is not None:
            start = max(start, w.start)
            end = w.end if end is None else min(end, w.end)
        if rule.no_holidays:
            try:
                if local_day in _holidays(policy, st, local_day.year):
                    _add(reasons, "restricted_day")
            except geo.HolidayDataMissing:
                _add(reasons, "holiday_data_missing")
    return start, end


def _window_utc(local_day: date, zone: str, start: time, end: time | None) -> tuple[datetime, datetime]:
    tz = geo.zone(zone)
    opens = datetime.combine(local_day, start, tzinfo=tz)
    closes = (datetime.combine(local_day, end, tzinfo=tz) if end is not None
              else datetime.combine(local_day + timedelta(days=1), time(0), tzinfo=tz))
    return opens.astimezone(geo.UTC), closes.astimezone(geo.UTC)


def hours_reasons(policy: OutboundPolicy, zones: Sequence[str], states: Sequence[str], purpose: str,
                  at: datetime) -> tuple[list[str], datetime | None, datetime | None]:
    """Hours, restricted days and holidays in every candidate zone; and the intersected window."""
    reasons: list[str] = []
    opens: datetime | None = None
    closes: datetime | None = None
    for zone in zones:
        local_day = at.astimezone(geo.zone(zone)).date()
        day_reasons: list[str] = []
        start, end = _day_window(policy, states, purpose, local_day, day_reasons)
        for r in day_reasons:
            _add(reasons, r)
        o, c = _window_utc(local_day, zone, start, end)
        opens = o if opens is None else max(opens, o)
        closes = c if closes is None else min(closes, c)
        if not (o <= at < c) or (end is not None and end <= start):
            _add(reasons, "outside_calling_hours")
    if opens is not None and closes is not None and opens >= closes:
        opens = closes = None
    if "restricted_day" in reasons or "holiday_data_missing" in reasons:
        opens = closes = None
    return reasons, opens, closes


# ----------------------------------------------------------------------------- caps


def _count(attempts: Iterable[_Attempt], at: datetime, hours: int) -> list[datetime]:
    since = at - timedelta(hours=hours)
    return sorted(a.at for a in attempts if since < a.at <= at)


def _cap_hit(times: list[datetime], cap_calls: int) -> bool:
    return len(times) >= cap_calls


def cap_reasons(policy: OutboundPolicy, inp: CheckInput, facts: _Facts, at: datetime,
                landline_prerecorded_limited: bool) -> list[str]:
    """Frequency rules at time `at` over the loaded attempts and conversations."""
    reasons: list[str] = []
    e164 = facts.num.e164
    mine = [a for a in facts.attempts if a.person_key == facts.person_key or a.phone == e164]

    def capped(cap: Cap, pool: Iterable[_Attempt]) -> bool:
        pool = [a for a in pool if cap.count_sms or a.method != "sms"]
        return _cap_hit(_count(pool, at, cap.hours), cap.calls)

    if inp.purpose == "debt_collection" and inp.debt_ref:
        debt = [a for a in facts.attempts if a.debt_ref == inp.debt_ref]
        if inp.method != "sms":
            rf = policy.reg_f
            calls = [a for a in debt if a.method != "sms"]
            if _cap_hit(_count(calls, at, rf.window_days * 24), rf.max_attempts):
                _add(reasons, "reg_f_7in7")
            for conv in facts.conversations:
                for zone in facts.zones or ["UTC"]:
                    tz = geo.zone(zone)
                    days = (at.astimezone(tz).date() - conv.astimezone(tz).date()).days
                    if 0 <= days < rf.after_conversation_days:
                        _add(reasons, "reg_f_after_conversation")
        for st in facts.states:
            rule = policy.states.get(st)
            if rule and rule.cap and "debt_collection" in rule.purposes and rule.cap.per == "debt" \
                    and capped(rule.cap, debt):
                _add(reasons, "frequency_cap")
    for st in facts.states:
        rule = policy.states.get(st)
        if not rule or not rule.cap or inp.purpose not in rule.purposes or rule.cap.per == "debt":
            continue
        pool = [a for a in mine if a.purpose == inp.purpose]
        if rule.cap.per == "person_subject" and inp.campaign:
            pool = [a for a in pool if a.campaign == inp.campaign]
        if capped(rule.cap, pool):
            _add(reasons, "frequency_cap")
    if inp.campaign and inp.campaign in policy.campaign_caps:
        cap = policy.campaign_caps[inp.campaign]
        if capped(cap, [a for a in mine if a.campaign == inp.campaign]):
            _add(reasons, "frequency_cap")
    if landline_prerecorded_limited:
        cap = policy.consent.residential_prerecorded_limit
        pool = [a for a in facts.attempts if a.phone == e164 and a.method == "prerecorded"]
        if capped(cap, pool):
            _add(reasons, "frequency_cap")
    return reasons


# ----------------------------------------------------------------------------- loading


def _advisory_locks(session: Session, tenant_id: str, keys: Iterable[str]) -> None:
    """Serialize recording checks on the same number / person / debt across processes."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: every transaction begins IMMEDIATE, writers are already serialized
    ids = sorted({int.from_bytes(hashlib.sha256(f"tcpa\x00{tenant_id}\x00{k}".encode()).digest()[:8],
                                 "big", signed=True) for k in keys})
    for lock_id in ids:  # a fixed order: two checks never deadlock
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})


def _load_attempts(session: Session, tenant_id: str, inp: CheckInput, e164: str, pkey: str,
                   policy: OutboundPolicy) -> list[_Attempt]:
    hours = [policy.reg_f.window_days * 24, policy.consent.residential_prerecorded_limit.hours]
    hours += [r.cap.hours for r in policy.states.values() if r.cap]
    hours += [c.hours for c in policy.campaign_caps.values()]
    since = inp.at - timedelta(hours=max(hours))
    conds = [CallAttempt.phone == e164, CallAttempt.person_key == pkey]
    if inp.debt_ref:
        conds.append(CallAttempt.debt_ref == inp.debt_ref)
    rows = session.execute(select(
        CallAttempt.at, CallAttempt.phone, CallAttempt.person_key, CallAttempt.debt_ref,
        CallAttempt.campaign, CallAttempt.purpose, CallAttempt.method).where(
        CallAttempt.tenant_id == tenant_id, or_(*conds), CallAttempt.at > since,
        CallAttempt.at <= inp.at + _HORIZON)).all()
    return [_Attempt(*r) for r in rows]


@dataclass(frozen=True)
class ConsentFact:
    """The fields of a consent the rules read."""

    kind: str
    purposes: tuple[str, ...]
    captured_at: datetime
    revoked_at: datetime | None
    voided_at: datetime | None


def consent_eval(purpose: str, method: str, landline: bool, consents: Sequence[ConsentFact],
                 reassigned_at: datetime | None, at: datetime) -> tuple[list[str], bool, bool]:
    """(reasons, landline prerecorded limit applies, written consent on file) - pure."""
    reasons: list[str] = []

    def usable(c: ConsentFact) -> bool:
        return (c.captured_at <= at and c.revoked_at is None and c.voided_at is None
                and (reassigned_at is None or c.captured_at > reassigned_at)
                and purpose in c.purposes)

    active = [c for c in consents if usable(c)]
    written = any(c.kind == "written" for c in active)
    need: Literal["none", "express", "written"] = "none"
    # 47 CFR 64.1200(a)(1)-(2): autodialed/prerecorded calls and texts to a wireless number.
    # A text only reaches a wireless line, so a landline marking never relaxes it.
    if method == "sms" or (not landline and method in ("autodialer", "prerecorded")):
        need = "written" if purpose == "telemarketing" else "express"
    # 47 CFR 64.1200(a)(3): prerecorded telemarketing to a residential line.
    elif landline and method == "prerecorded" and purpose == "telemarketing":
        need = "written"
    ok = need == "none" or (written if need == "written" else bool(active))
    if not ok:
        scoped = [c for c in consents if purpose in c.purposes and c.captured_at <= at]
        if any(c.voided_at is not None or (reassigned_at is not None and c.captured_at <= reassigned_at)
               for c in scoped):
            _add(reasons, "reassigned_number")
        elif any(c.revoked_at is not None for c in scoped):
            _add(reasons, "consent_revoked")
        else:
            _add(reasons, "no_consent")
    limited = landline and method == "prerecorded" and purpose != "telemarketing" and not active
    return reasons, limited, written


def consent_fact(c: Consent) -> ConsentFact:
    """The rule-relevant view of a stored consent."""
    return ConsentFact(c.kind, tuple(c.purposes), c.captured_at, c.revoked_at, c.voided_at)


def _consent_reasons(session: Session, tenant_id: str, inp: CheckInput, e164: str,
                     at: datetime) -> tuple[list[str], bool, bool]:
    """Load one number's line type, consents and reassignment evidence; evaluate."""
    line = session.execute(select(LineType.line_type).where(
        LineType.tenant_id == tenant_id, LineType.phone == e164)).scalar()
    # phonenumbers cannot tell wireless from landline in the US: wireless unless marked.
    consents = session.execute(select(Consent).where(
        Consent.tenant_id == tenant_id, Consent.phone == e164)).scalars().all()
    # A wrong-number or disconnected outcome after consent means the number may be reassigned.
    reassigned_at = session.execute(select(CallOutcome.at).where(
        CallOutcome.tenant_id == tenant_id, CallOutcome.phone == e164,
        CallOutcome.outcome.in_(("wrong_number", "disconnected")), CallOutcome.at <= at)
        .order_by(CallOutcome.at.desc()).limit(1)).scalar()
    return consent_eval(inp.purpose, inp.method, line == "landline",
                        [consent_fact(c) for c in consents], reassigned_at, at)


def ebr_eval(policy: OutboundPolicy, rows: Iterable[tuple[str, datetime]], states: Sequence[str],
             at: datetime) -> bool:
    """Whether an established business relationship is in force at `at` - pure."""
    purchase = policy.ebr.purchase_days
    inquiry = policy.ebr.inquiry_days
    for st in states:
        rule = policy.states.get(st)
        if rule and rule.ebr_purchase_days is not None:
            purchase = min(purchase, rule.ebr_purchase_days)
        if rule and rule.ebr_inquiry_days is not None:
            inquiry = min(inquiry, rule.ebr_inquiry_days)
    for kind, when in rows:
        days = purchase if kind == "purchase" else inquiry
        if when <= at and at - when <= timedelta(days=days):
            return True
    return False


def _ebr_valid(session: Session, tenant_id: str, policy: OutboundPolicy, e164: str,
               customer_ref: str | None, states: Sequence[str], at: datetime) -> bool:
    conds = [Relationship.phone == e164]
    if customer_ref:
        conds.append(Relationship.customer_ref == customer_ref)
    rows = session.execute(select(Relationship.kind, Relationship.at).where(
        Relationship.tenant_id == tenant_id, or_(*conds), Relationship.at <= at)).all()
    return ebr_eval(policy, [(r[0], r[1]) for r in rows], states, at)


def _dnc_reasons(session: Session, tenant_id: str, policy: OutboundPolicy, inp: CheckInput,
                 num: geo.ParsedNumber, states: Sequence[str], index: RegistryIndex,
                 written_consent: bool, at: datetime, now: datetime,
                 versions_used: dict[str, str]) -> list[str]:
    reasons: list[str] = []
    if session.get(InternalDnc, (tenant_id, num.e164)) is not None:
        _add(reasons, "internal_dnc")
    versions = active_versions(session, tenant_id)
    lit = versions.get("litigator")
    if lit is not None:
        versions_used["litigator"] = lit.id
        if num.area_code and index.contains(session, lit.id, num.area_code, num.local):
            _add(reasons, "litigator")
    if inp.purpose != "telemarketing":
        return reasons
    listed: list[str] = []
    national = versions.get("national")
    if national is None:
        _add(reasons, "registry_stale")  # no registry at all: fail closed
    else:
        versions_used["national"] = national.id
        if now - national.file_date > timedelta(days=policy.registry.national_max_age_days):
            _add(reasons, "registry_stale")
        if num.area_code and index.contains(session, national.id, num.area_code, num.local):
            listed.append("national_dnc")
    if num.area_code:
        subscribed = session.get(Subscription, (tenant_id, num.area_code)) is not None
        if not subscribed:
            _add(reasons, "registry_not_subscribed")
    for name, ver in sorted(versions.items()):
        if name.startswith("state:"):
            versions_used[name] = ver.id
            if num.area_code and index.contains(session, ver.id, num.area_code, num.local):
                listed.append("state_dnc")
    if listed and not written_consent and not _ebr_valid(
            session, tenant_id, policy, num.e164, inp.customer_ref, states, at):
        for code in listed:
            _add(reasons, code)
    return reasons


# ----------------------------------------------------------------------------- the decision


def check(session: Session, *, tenant_id: str, policy: OutboundPolicy, inp: CheckInput, now: datetime,
          index: RegistryIndex, record: bool = False) -> Decision:
    """Decide one call; with `record`, an allowed call is recorded atomically (caps hold under races)."""
    try:
        num = geo.parse(inp.phone)
    except geo.InvalidNumber:
        return Decision("deny", ["invalid_number"], None)
    if num.region not in policy.jurisdictions:
        return Decision("deny", ["unsupported_jurisdiction"], num.e164)
    pkey = person_key(inp.customer_ref, num.e164)
    if record:
        _advisory_locks(session, tenant_id, [f"p:{num.e164}", pkey, f"d:{inp.debt_ref or ''}"])
    reasons: list[str] = []
    versions_used: dict[str, str] = {}
    zones: list[str] = []
    states: list[str] = []
    at = inp.at
    try:
        zones, states = _locate(policy, num, inp.state, inp.zip)
        if not zones:
            _add(reasons, "timezone_unknown")
        consent_r, limited, written = _consent_reasons(session, tenant_id, inp, num.e164, at)
        dnc_r = _dnc_reasons(session, tenant_id, policy, inp, num, states, index, written, at, now,
                             versions_used)
        attempts = _load_attempts(session, tenant_id, inp, num.e164, pkey, policy)
        conversations: list[datetime] = []
        if inp.purpose == "debt_collection" and inp.debt_ref:
            conversations = list(session.execute(select(CallOutcome.at).where(
                CallOutcome.tenant_id == tenant_id, CallOutcome.debt_ref == inp.debt_ref,
                CallOutcome.outcome == "connected", CallOutcome.at <= at)).scalars())
        facts = _Facts(num=num, zones=zones, states=states, person_key=pkey, attempts=attempts,
                       conversations=conversations)
        hr, opens, closes = hours_reasons(policy, zones, states, inp.purpose, at)
        for r in [*hr, *dnc_r, *consent_r, *cap_reasons(policy, inp, facts, at, limited)]:
            _add(reasons, r)
    except Exception:
        log.exception("outbound rule evaluation failed")
        _add(reasons, "rule_error")
        opens = closes = None
        facts = None
    reasons = ordered(reasons)
    decision = Decision("deny" if reasons else "allow", reasons, num.e164, zones, states, opens,
                        closes, registry_versions=versions_used)
    if not reasons:
        decision.next_allowed_at = at
    elif facts is not None and zones and set(reasons) <= TEMPORAL:
        decision.next_allowed_at = _next_allowed(policy, inp, facts, at, limited)
    if record and not reasons:
        attempt = CallAttempt(id=new_id("att"), tenant_id=tenant_id, phone=num.e164, person_key=pkey,
                              customer_ref=inp.customer_ref, debt_ref=inp.debt_ref,
                              campaign=inp.campaign, purpose=inp.purpose, method=inp.method, at=at,
                              source="check")
        session.add(attempt)
        session.flush()
        decision.attempt_id = attempt.id
    return decision


def _next_allowed(policy: OutboundPolicy, inp: CheckInput, facts: _Facts, at: datetime,
                  limited: bool) -> datetime | None:
    """The first moment within the horizon when every time-bound rule passes, if any."""
    candidates: set[datetime] = set()
    for zone in facts.zones:
        local_day = at.astimezone(geo.zone(zone)).date()
        for offset in range(_HORIZON.days):
            day = local_day + timedelta(days=offset)
            rs: list[str] = []
            start, end = _day_window(policy, facts.states, inp.purpose, day, rs)
            candidates.add(_window_utc(day, zone, start, end)[0])
            candidates.add(datetime.combine(day, time(0), tzinfo=geo.zone(zone)).astimezone(geo.UTC))
    for a in facts.attempts:
        for h in {policy.reg_f.window_days * 24, policy.consent.residential_prerecorded_limit.hours,
                  *(r.cap.hours for r in policy.states.values() if r.cap),
                  *(c.hours for c in policy.campaign_caps.values())}:
            candidates.add(a.at + timedelta(hours=h, microseconds=1))
    for t in sorted(c for c in candidates if at < c <= at + _HORIZON):
        hr, _, _ = hours_reasons(policy, facts.zones, facts.states, inp.purpose, t)
        if not hr and not cap_reasons(policy, inp, facts, t, limited):
            return t
    return None


# ----------------------------------------------------------------------------- records


def record_attempt(session: Session, *, tenant_id: str, e164: str, customer_ref: str | None,
                   debt_ref: str | None, campaign: str | None, purpose: str, method: str,
                   at: datetime) -> CallAttempt:
    """Record an attempt made without a recording check (imported log, manual call)."""
    row = CallAttempt(id=new_id("att"), tenant_id=tenant_id, phone=e164,
                      person_key=person_key(customer_ref, e164), customer_ref=customer_ref,
                      debt_ref=debt_ref, campaign=campaign, purpose=purpose, method=method, at=at,
                      source="import")
    session.add(row)
    return row


def add_internal_dnc(session: Session, *, tenant_id: str, e164: str, source: str, clock: Clock) -> None:
    """Put a number on the tenant's internal list and revoke its consents (effective at once)."""
    insert_ignore(session, InternalDnc, tenant_id=tenant_id, phone=e164, source=source,
                  added_at=clock.now())
    revoke_consents(session, tenant_id=tenant_id, e164=e164, at=clock.now())


def revoke_consents(session: Session, *, tenant_id: str, e164: str, at: datetime) -> int:
    """Revoke every active consent of a number."""
    res = session.execute(update(Consent).where(
        Consent.tenant_id == tenant_id, Consent.phone == e164, Consent.revoked_at.is_(None))
        .values(revoked_at=at))
    session.flush()
    return int(getattr(res, "rowcount", 0) or 0)


def record_outcome(session: Session, *, tenant_id: str, e164: str, outcome: str,
                   customer_ref: str | None, debt_ref: str | None, attempt_id: str | None,
                   purpose: str | None, at: datetime, clock: Clock) -> tuple[CallOutcome, list[str]]:
    """Record a disposition and its effects; returns the effect codes."""
    row = CallOutcome(id=new_id("out"), tenant_id=tenant_id, phone=e164, customer_ref=customer_ref,
                      debt_ref=debt_ref, attempt_id=attempt_id, purpose=purpose, outcome=outcome, at=at)
    session.add(row)
    effects: list[str] = []
    if outcome in ("wrong_number", "disconnected"):
        res = session.execute(update(Consent).where(
            Consent.tenant_id == tenant_id, Consent.phone == e164, Consent.voided_at.is_(None),
            Consent.captured_at <= at).values(voided_at=at, void_reason="reassigned_number"))
        if getattr(res, "rowcount", 0):
            effects.append("consent_voided")
    if outcome == "opt_out":
        add_internal_dnc(session, tenant_id=tenant_id, e164=e164, source="opt_out", clock=clock)
        effects.append("internal_dnc_added")
    session.flush()
    return row, effects


def registry_status(session: Session, *, tenant_id: str, policy: OutboundPolicy,
                    now: datetime) -> list[dict[str, object]]:
    """Size and age of each active list the tenant's checks use."""
    out: list[dict[str, object]] = []
    for name, ver in sorted(active_versions(session, tenant_id).items()):
        age = (now - ver.file_date).total_seconds() / 86400
        out.append({"list": name, "version": ver.id, "count": ver.count,
                    "file_date": ver.file_date, "age_days": round(age, 2),
                    "stale": name == "national" and age > policy.registry.national_max_age_days})
    return out


def latest_version(session: Session, list_name: str) -> RegistryVersion | None:
    """The active operator-wide version of a list."""
    return session.execute(select(RegistryVersion).where(
        RegistryVersion.list_name == list_name, RegistryVersion.status == "active",
        RegistryVersion.tenant_id.is_(None))).scalars().first()
