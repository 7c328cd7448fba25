"""The scrub: the same rules as a single check over a large list, vectorized.

Numbers given as canonical E.164 (`+1` and 10 digits) are parsed with numpy; what phonenumbers
says about a number (validity, region, zones, state) depends only on its NPA-NXX here, so it is
computed once per 6-digit prefix with the single check's own parser and kept in a table. Any
other input goes through that parser one by one. Registry membership is a vectorized lookup per
area code; hours, consent and caps are evaluated by the single check's pure functions once per
group of numbers that share every input they read.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from guard.tcpa import geo, service
from guard.tcpa.models import (
    CallAttempt,
    CallOutcome,
    Consent,
    InternalDnc,
    LineType,
    Relationship,
    Subscription,
)
from guard.tcpa.policy import OutboundPolicy, Purpose
from guard.tcpa.registry import RegistryIndex, active_versions, sorted_unique

log = logging.getLogger(__name__)
REASONS = service.REASON_ORDER
BIT = {r: 1 << i for i, r in enumerate(REASONS)}
_PREFIXES = 1_000_000
I64 = npt.NDArray[np.int64]

# Prefix table kinds.
_UNKNOWN, _OK, _INVALID, _FOREIGN = 0, 1, 2, 3


class PrefixTable:
    """Per NPA-NXX: kind and an interned (zones, state, toll_free) id; filled lazily, shared."""

    def __init__(self) -> None:
        self.kind = np.zeros(_PREFIXES, dtype=np.int8)
        self.geo_id = np.zeros(_PREFIXES, dtype=np.int32)
        self.geos: list[tuple[frozenset[str], str | None, bool, str]] = []
        self._ids: dict[tuple[frozenset[str], str | None, bool, str], int] = {}
        self._lock = threading.Lock()

    def intern(self, key: tuple[frozenset[str], str | None, bool, str]) -> int:
        """The id of a (zones, state, toll_free, region) combination."""
        with self._lock:
            gid = self._ids.get(key)
            if gid is None:
                gid = self._ids[key] = len(self.geos)
                self.geos.append(key)
            return gid

    def fill(self, prefixes: npt.NDArray[np.int64]) -> None:
        """Compute missing prefixes with the single check's parser."""
        # The jurisdiction test reads the region per geo id later: tenants' policies may differ.
        for pre in sorted_unique(prefixes[self.kind[prefixes] == _UNKNOWN]).tolist():
            try:
                num = geo.parse(f"+1{pre:06d}0000")
            except geo.InvalidNumber:
                self.kind[pre] = _INVALID
                continue
            self.geo_id[pre] = self.intern((num.zones, num.state, num.toll_free, num.region))
            self.kind[pre] = _OK


@dataclass(frozen=True)
class ScrubContext:
    """The context every number of the list shares."""

    purpose: Purpose
    method: service.Method
    at: datetime
    campaign: str | None = None
    debt_ref: str | None = None
    state: str | None = None
    zip: str | None = None


@dataclass
class ScrubResult:
    """One bitmask of reasons per number, the canonical numbers, and the versions used."""

    masks: npt.NDArray[np.int32]
    e164: list[str | None]
    registry_versions: dict[str, str] = field(default_factory=dict)

    def reasons(self, i: int) -> list[str]:
        """The reasons of number i, in canonical order."""
        return mask_reasons(int(self.masks[i]))

    def totals(self) -> dict[str, int]:
        """Count of numbers per reason, plus allow/deny counts."""
        out: dict[str, int] = {"allow": int((self.masks == 0).sum()), "deny": int((self.masks != 0).sum())}
        for r, b in BIT.items():
            n = int(((self.masks & b) != 0).sum())
            if n:
                out[r] = n
        return out


def mask_reasons(mask: int) -> list[str]:
    """Reason codes of a bitmask, in canonical order."""
    return [r for r in REASONS if mask & BIT[r]]


def _mask(reasons: Sequence[str]) -> int:
    m = 0
    for r in reasons:
        m |= BIT[r]
    return m


def prefix_table(extras: dict[str, object]) -> PrefixTable:
    """The process's prefix table (kept in the runtime's extras)."""
    t = extras.get("tcpa_prefix_table")
    if t is None:
        t = extras.setdefault("tcpa_prefix_table", PrefixTable())
    assert isinstance(t, PrefixTable)
    return t


def _digits_value(grid: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.bool_], I64]:
    """Rows of 10 ASCII digits -> (all digits?, value), in two uint32 halves (narrow, fast)."""
    d = grid - np.uint8(48)  # a non-digit wraps past 9
    ok: npt.NDArray[np.bool_] = np.asarray((d <= 9).all(axis=1), dtype=np.bool_)
    hi = d[:, 0].astype(np.uint32)
    lo = d[:, 5].astype(np.uint32)
    for k in range(1, 5):
        hi = hi * np.uint32(10) + d[:, k]
        lo = lo * np.uint32(10) + d[:, 5 + k]
    value: I64 = hi.astype(np.int64) * 100_000 + lo
    return ok, value


def _fast_parse(phones: Sequence[str]) -> I64:
    """10-digit national numbers of canonical `+1XXXXXXXXXX` inputs; -1 for anything else."""
    n = len(phones)
    out = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return out
    # Common case, one pass: every entry is 12 ASCII characters. Joined with newlines, every 13th
    # byte is then a newline and the total length is exact; anything else takes the slow route.
    try:
        raw = np.frombuffer("\n".join(phones).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raw = None
    if raw is not None and raw.size == 13 * n - 1:
        grid = np.empty(13 * n, dtype=np.uint8)
        grid[:-1] = raw
        grid[-1] = 10
        rows = grid.reshape(n, 13)
        if (rows[:, 12] == 10).all():
            ok, value = _digits_value(rows[:, 2:12])
            ok &= (rows[:, 0] == ord("+")) & (rows[:, 1] == ord("1"))
            out[ok] = value[ok]
            return out
    lens = np.fromiter((len(p) for p in phones), dtype=np.int32, count=n)
    idx = np.flatnonzero(lens == 12)
    if idx.size == 0:
        return out
    try:
        sel = np.frombuffer("".join(phones[i] for i in idx.tolist()).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return out
    if sel.size != idx.size * 12:
        return out
    rows = sel.reshape(-1, 12)
    ok, value = _digits_value(rows[:, 2:])
    ok &= (rows[:, 0] == ord("+")) & (rows[:, 1] == ord("1"))
    out[idx[ok]] = value[ok]
    return out


def _e164_to_int(e164: str) -> int:
    return int(e164[2:]) if e164.startswith("+1") and len(e164) == 12 else -1


def scrub(session: Session, *, tenant_id: str, policy: OutboundPolicy, ctx: ScrubContext,
          phones: Sequence[str], now: datetime, index: RegistryIndex, table: PrefixTable) -> ScrubResult:
    """Decide every number of a list with the single check's rules (no recording)."""
    n = len(phones)
    masks = np.zeros(n, dtype=np.int32)
    national = _fast_parse(phones)
    e164: list[str | None] = [None] * n
    slow_geo: dict[int, int] = {}
    # Numbers that are not canonical E.164: the single check's parser, one by one.
    for i in np.flatnonzero(national < 0).tolist():
        try:
            num = geo.parse(phones[i])
        except geo.InvalidNumber:
            masks[i] = BIT["invalid_number"]
            continue
        if num.region not in policy.jurisdictions:
            masks[i] = BIT["unsupported_jurisdiction"]
            e164[i] = num.e164
            continue
        national[i] = int(num.e164[2:]) if num.e164.startswith("+1") and len(num.e164) == 12 else -2
        slow_geo[i] = table.intern((num.zones, num.state, num.toll_free, num.region))
        e164[i] = num.e164
    fast = np.flatnonzero((national >= 0) & (masks == 0))
    fast = np.array([i for i in fast.tolist() if i not in slow_geo], dtype=np.int64) if slow_geo else fast
    prefixes = national[fast] // 10_000
    table.fill(prefixes)
    kinds = table.kind[prefixes]
    masks[fast[kinds == _INVALID]] = BIT["invalid_number"]
    geo_ids = np.full(n, -1, dtype=np.int32)
    geo_ids[fast] = table.geo_id[prefixes]
    geo_ids[fast[kinds == _INVALID]] = -1
    for i, gid in slow_geo.items():
        geo_ids[i] = gid
    for gid in sorted_unique(geo_ids[geo_ids >= 0]).tolist():
        if table.geos[gid][3] not in policy.jurisdictions:
            masks[geo_ids == gid] = BIT["unsupported_jurisdiction"]
            geo_ids[geo_ids == gid] = -1
    fast_live = fast[geo_ids[fast] >= 0]
    if fast_live.size == n:
        e164 = list(phones)  # canonical E.164 input is its own answer
    else:
        for i in fast_live.tolist():
            e164[i] = phones[i]
    live = np.flatnonzero(geo_ids >= 0)
    versions_used: dict[str, str] = {}
    try:
        listed = _registries(session, tenant_id, policy, ctx, national, live, masks, index, now,
                             versions_used)
        _per_group(session, tenant_id, policy, ctx, national, geo_ids, live, masks, listed, table, e164)
    except Exception:
        log.exception("scrub rule evaluation failed")
        masks[live] |= BIT["rule_error"]
    return ScrubResult(masks=masks, e164=e164, registry_versions=versions_used)


def _member(session: Session, index: RegistryIndex, version_id: str, national: I64,
            live: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Vectorized membership of the live numbers in one registry version (one pass per area code)."""
    hit = np.zeros(national.shape, dtype=np.bool_)
    live = live[national[live] >= 0]
    if live.size == 0:
        return hit
    area = national[live] // 10_000_000
    order = np.argsort(area, kind="stable")
    bounds = np.flatnonzero(np.diff(area[order])) + 1
    for chunk in np.split(order, bounds):
        blk = index.block(session, version_id, int(area[chunk[0]]))
        if blk is None:
            continue
        rows = live[chunk]
        hit[rows] = blk.contains((national[rows] % 10_000_000).astype(np.uint32))
    return hit


def _registries(session: Session, tenant_id: str, policy: OutboundPolicy, ctx: ScrubContext, national: I64,
                live: npt.NDArray[np.int64], masks: npt.NDArray[np.int32], index: RegistryIndex,
                now: datetime, versions_used: dict[str, str]) -> npt.NDArray[np.int32]:
    """Add internal/litigator/stale/subscription reasons; return national/state listings (maybe exempt)."""
    internal = np.array([_e164_to_int(p) for p in session.execute(select(InternalDnc.phone).where(
        InternalDnc.tenant_id == tenant_id)).scalars()], dtype=np.int64)
    masks[live[np.isin(national[live], internal)]] |= BIT["internal_dnc"]
    versions = active_versions(session, tenant_id)
    lit = versions.get("litigator")
    if lit is not None:
        versions_used["litigator"] = lit.id
        masks[_member(session, index, lit.id, national, live)] |= BIT["litigator"]
    listed = np.zeros(national.shape, dtype=np.int32)
    if ctx.purpose != "telemarketing":
        return listed
    nat = versions.get("national")
    if nat is None or now - nat.file_date > timedelta(days=policy.registry.national_max_age_days):
        masks[live] |= BIT["registry_stale"]
    if nat is not None:
        versions_used["national"] = nat.id
        listed[_member(session, index, nat.id, national, live)] |= BIT["national_dnc"]
    subscribed = np.array(list(session.execute(select(Subscription.area_code).where(
        Subscription.tenant_id == tenant_id)).scalars()), dtype=np.int64)
    nanp = live[national[live] >= 0]
    masks[nanp[~np.isin(national[nanp] // 10_000_000, subscribed)]] |= BIT["registry_not_subscribed"]
    for name, ver in sorted(versions.items()):
        if name.startswith("state:"):
            versions_used[name] = ver.id
            listed[_member(session, index, ver.id, national, live)] |= BIT["state_dnc"]
    return listed


def _per_group(session: Session, tenant_id: str, policy: OutboundPolicy, ctx: ScrubContext, national: I64,
               geo_ids: npt.NDArray[np.int32], live: npt.NDArray[np.int64], masks: npt.NDArray[np.int32],
               listed: npt.NDArray[np.int32], table: PrefixTable, e164: list[str | None]) -> None:
    """Hours, consent, DNC exemptions and caps: once per geo group, per number where rows exist."""
    at = ctx.at
    consents: dict[str, list[service.ConsentFact]] = defaultdict(list)
    for phone, kind, purposes, captured, revoked, voided in session.execute(select(
            Consent.phone, Consent.kind, Consent.purposes, Consent.captured_at, Consent.revoked_at,
            Consent.voided_at).where(Consent.tenant_id == tenant_id)):
        consents[phone].append(service.ConsentFact(kind, tuple(purposes), captured, revoked, voided))
    landlines = set(session.execute(select(LineType.phone).where(
        LineType.tenant_id == tenant_id, LineType.line_type == "landline")).scalars())
    reassigned: dict[str, datetime] = {}
    for phone, when in session.execute(select(CallOutcome.phone, CallOutcome.at).where(
            CallOutcome.tenant_id == tenant_id, CallOutcome.outcome.in_(("wrong_number", "disconnected")),
            CallOutcome.at <= at)):
        reassigned[phone] = max(when, reassigned.get(phone, when))
    ebr: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    rel = select(Relationship.phone, Relationship.kind, Relationship.at).where(
        Relationship.tenant_id == tenant_id, Relationship.at <= at)
    for phone, kind, when in session.execute(rel):
        ebr[phone].append((kind, when))
    hours = [policy.reg_f.window_days * 24, policy.consent.residential_prerecorded_limit.hours]
    hours += [r.cap.hours for r in policy.states.values() if r.cap]
    hours += [c.hours for c in policy.campaign_caps.values()]
    since = at - timedelta(hours=max(hours))
    own: dict[str, list[service._Attempt]] = defaultdict(list)
    debt: list[service._Attempt] = []
    for row in session.execute(select(
            CallAttempt.at, CallAttempt.phone, CallAttempt.person_key, CallAttempt.debt_ref,
            CallAttempt.campaign, CallAttempt.purpose, CallAttempt.method).where(
            CallAttempt.tenant_id == tenant_id, CallAttempt.at > since,
            CallAttempt.at <= at + service._HORIZON)):
        a = service._Attempt(*row)
        if ctx.debt_ref and a.debt_ref == ctx.debt_ref:
            debt.append(a)
        own[a.phone].append(a)
    conversations: list[datetime] = []
    if ctx.purpose == "debt_collection" and ctx.debt_ref:
        conversations = list(session.execute(select(CallOutcome.at).where(
            CallOutcome.tenant_id == tenant_id, CallOutcome.debt_ref == ctx.debt_ref,
            CallOutcome.outcome == "connected", CallOutcome.at <= at)).scalars())
    special = set(consents) | landlines | set(reassigned) | set(ebr) | set(own)
    inp = service.CheckInput(phone="", purpose=ctx.purpose, method=ctx.method, at=at, campaign=ctx.campaign,
                             debt_ref=ctx.debt_ref, state=ctx.state, zip=ctx.zip)
    base_consent = service.consent_eval(ctx.purpose, ctx.method, False, [], None, at)
    groups: dict[int, tuple[int, int, service._Facts]] = {}
    for gid in sorted_unique(geo_ids[live]).tolist():
        zones_t, state_t, toll_free, region = table.geos[gid]
        num = geo.ParsedNumber(e164="", region=region, area_code=0, local=0, zones=zones_t,
                               state=state_t, toll_free=toll_free)
        zones, states = service._locate(policy, num, ctx.state, ctx.zip)
        hr, _, _ = service.hours_reasons(policy, zones, states, ctx.purpose, at)
        facts = service._Facts(num=num, zones=zones, states=states, person_key="", attempts=debt,
                               conversations=conversations)
        caps = service.cap_reasons(policy, inp, facts, at, base_consent[1])
        hours_mask = _mask([*([] if zones else ["timezone_unknown"]), *hr])
        groups[gid] = (hours_mask, _mask([*base_consent[0], *caps]), facts)
    registry_mask = masks.copy()
    for gid, (hours_mask, rest_mask, _facts) in groups.items():
        sel = live[geo_ids[live] == gid]
        masks[sel] |= hours_mask | rest_mask | listed[sel]
    if not special:
        return
    special_ints = np.array([_e164_to_int(p) for p in special], dtype=np.int64)
    for i in live[np.isin(national[live], special_ints)].tolist():
        ph = e164[i]
        if ph is None or ph not in special:
            continue
        hours_mask, _rest, g = groups[int(geo_ids[i])]
        creasons, limited, written = service.consent_eval(
            ctx.purpose, ctx.method, ph in landlines, consents.get(ph, []), reassigned.get(ph), at)
        num = geo.ParsedNumber(e164=ph, region=g.num.region, area_code=0, local=0, zones=g.num.zones,
                               state=g.num.state, toll_free=g.num.toll_free)
        attempts = {id(a): a for a in [*debt, *own.get(ph, [])]}
        facts = service._Facts(num=num, zones=g.zones, states=g.states, person_key=f"p:{ph}",
                               attempts=list(attempts.values()), conversations=conversations)
        caps = service.cap_reasons(policy, inp, facts, at, limited)
        m = int(registry_mask[i]) | hours_mask | _mask([*creasons, *caps])
        if listed[i] and not written and not service.ebr_eval(policy, ebr.get(ph, []), g.states, at):
            m |= int(listed[i])
        masks[i] = m


def merkle_root(leaves: Sequence[bytes]) -> str:
    """RFC 9162-style Merkle tree hash over leaves (0x00 leaf, 0x01 node prefixes)."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


CHUNK_LINES = 4096


def render(result: ScrubResult, fmt: str) -> list[bytes]:
    """The per-number output as byte chunks of CHUNK_LINES lines (csv or ndjson)."""
    masks = result.masks.tolist()
    tails: dict[int, str] = {}
    for m in set(masks):
        reasons = mask_reasons(m)
        decision = "deny" if m else "allow"
        if fmt == "csv":
            tails[m] = f",{decision},{';'.join(reasons)}\n"
        else:
            tails[m] = ',"decision":"{}","reasons":[{}]}}\n'.format(
                decision, ",".join(f'"{r}"' for r in reasons))
    chunks: list[bytes] = []
    e164 = result.e164
    for start in range(0, len(masks), CHUNK_LINES):
        end = min(start + CHUNK_LINES, len(masks))
        if fmt == "csv":
            lines = [f"{i},{e164[i] or ''}{tails[masks[i]]}" for i in range(start, end)]
        else:
            lines = [f'{{"i":{i},"phone_e164":{_js(e164[i])}{tails[masks[i]]}' for i in range(start, end)]
        chunks.append("".join(lines).encode())
    return chunks


def _js(value: str | None) -> str:
    return "null" if value is None else f'"{value}"'


def digest(chunks: Sequence[bytes]) -> str:
    """Merkle root over the output chunks: commits to every decision, in order."""
    return merkle_root(chunks)
