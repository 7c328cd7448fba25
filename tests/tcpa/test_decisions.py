"""Table-driven scenarios for POST /v1/calls/check: every rule, fixed dates, DST edges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def T(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


NY = "(212) 555-1234"       # America/New_York, NY
FL_PNS = "850-434-5555"     # Pensacola exchange: Central, although 850 defaults to Eastern
FL_TLH = "850-222-5555"     # Tallahassee exchange: Eastern
ID = "208-555-1234"         # Boise and Los Angeles zones
RI = "401-555-1234"
TX = "214-555-1234"         # Dallas, Central
LA = "504-555-1234"         # New Orleans, Central
PA = "215-555-1234"
MA = "617-555-1234"
MIA = "305-555-1234"
OKC = "405-555-1234"
DEN = "303-555-1234"

# Mon 2026-11-23 15:00Z = 10:00 in New York.
MON_10_ET = "2026-11-23T15:00:00Z"


@dataclass
class Scenario:
    """One row: setup steps, the request, the expected decision and reasons."""

    name: str
    request: dict[str, Any]
    decision: str
    reasons: list[str]
    setup: list[Callable[[Any], Any]] = field(default_factory=list)
    next_allowed_at: str | None = None


def consent(phone: str, kind: str, captured: str = "2026-11-01T12:00:00Z", **kw: Any) -> Callable[[Any], Any]:
    body = {"phone": phone, "kind": kind, "source": "web form /signup", "channel": "web",
            "text_shown": "I agree that Acme may call me with autodialed marketing calls.",
            "captured_at": captured, **kw}
    return lambda e: e.post("/consents", body, role="agent", status=201)


def attempts(phone: str, times: list[str], **kw: Any) -> Callable[[Any], Any]:
    items = [{"phone": phone, "purpose": "telemarketing", "method": "manual", "at": t, **kw} for t in times]
    return lambda e: e.post("/calls/attempts", {"attempts": items}, role="dialer", status=201)


def outcome(phone: str, kind: str, at: str, **kw: Any) -> Callable[[Any], Any]:
    return lambda e: e.post("/calls/outcome", {"phone": phone, "outcome": kind, "at": at, **kw},
                            role="dialer", status=201)


def landline(phone: str) -> Callable[[Any], Any]:
    return lambda e: e.post("/numbers/line-type", {"phone": phone, "line_type": "landline"},
                            role="agent", status=200)


def national(*numbers: str, age_days: float = 1) -> Callable[[Any], Any]:
    return lambda e: e.national(list(numbers), age_days=age_days)


def ebr(phone: str, kind: str, at: str) -> Callable[[Any], Any]:
    return lambda e: e.post("/relationships", {"customer_ref": "cust-1", "phone": phone, "kind": kind,
                                               "at": at}, role="agent", status=201)


def req(phone: str, at: str, **kw: Any) -> dict[str, Any]:
    return {"phone": phone, "at": at, **kw}


SCENARIOS = [
    # --- number
    Scenario("plain allow", req(NY, MON_10_ET), "allow", []),
    Scenario("formats: e164", req("+12125551234", MON_10_ET), "allow", []),
    Scenario("invalid number", req("555-12", MON_10_ET), "deny", ["invalid_number"]),
    Scenario("not a number", req("call me maybe", MON_10_ET), "deny", ["invalid_number"]),
    Scenario("canadian number", req("+1 416 555 1234", MON_10_ET), "deny", ["unsupported_jurisdiction"]),
    Scenario("uk number", req("+44 20 7946 0958", MON_10_ET), "deny", ["unsupported_jurisdiction"]),
    # --- federal hours, DST
    Scenario("07:59 local", req(NY, "2026-11-23T12:59:00Z"), "deny", ["outside_calling_hours"],
             next_allowed_at="2026-11-23T13:00:00Z"),
    Scenario("08:00 local", req(NY, "2026-11-23T13:00:00Z"), "allow", []),
    Scenario("20:59 local", req(NY, "2026-11-24T01:59:00Z"), "allow", []),
    Scenario("21:00 local", req(NY, "2026-11-24T02:00:00Z"), "deny", ["outside_calling_hours"],
             next_allowed_at="2026-11-24T13:00:00Z"),
    # 2026-03-08 spring forward: 12:30Z is 08:30 EDT (07:30 if DST were ignored).
    Scenario("spring forward day 08:30 EDT", req(NY, "2026-03-08T12:30:00Z"), "allow", []),
    Scenario("day before spring forward 07:30 EST", req(NY, "2026-03-07T12:30:00Z"), "deny",
             ["outside_calling_hours"], next_allowed_at="2026-03-07T13:00:00Z"),
    Scenario("spring forward night 01:30 EST", req(NY, "2026-03-08T06:30:00Z"), "deny",
             ["outside_calling_hours"], next_allowed_at="2026-03-08T12:00:00Z"),
    # 2026-11-01 fall back: 12:30Z is 07:30 EST.
    Scenario("fall back day 07:30 EST", req(NY, "2026-11-01T12:30:00Z"), "deny",
             ["outside_calling_hours"], next_allowed_at="2026-11-01T13:00:00Z"),
    Scenario("day before fall back 08:30 EDT", req(NY, "2026-10-31T12:30:00Z"), "allow", []),
    # --- zones from the exchange, several zones, address
    Scenario("850-434 is Central: 07:30 there", req(FL_PNS, "2026-11-23T13:30:00Z"), "deny",
             ["outside_calling_hours"], next_allowed_at="2026-11-23T14:00:00Z"),
    Scenario("850-222 is Eastern: 08:30 there", req(FL_TLH, "2026-11-23T13:30:00Z"), "allow", []),
    Scenario("208 spans Mountain and Pacific: 07:30 PST", req(ID, "2026-11-23T15:30:00Z"), "deny",
             ["outside_calling_hours"], next_allowed_at="2026-11-23T16:00:00Z"),
    Scenario("208 at 08:00 PST", req(ID, "2026-11-23T16:00:00Z"), "allow", []),
    Scenario("208 evening: Mountain closes first", req(ID, "2026-11-24T04:00:00Z"), "deny",
             ["outside_calling_hours"]),
    Scenario("NY number, Miami address: FL closes at 20:00", req(NY, "2026-11-24T01:30:00Z",
             address={"state": "FL", "zip": "33101"}), "deny", ["outside_calling_hours"]),
    Scenario("NY number, Miami address 19:30", req(NY, "2026-11-24T00:30:00Z",
             address={"state": "FL", "zip": "33101"}), "allow", []),
    Scenario("NY number, Texas address: TX opens 09:00 Central", req(NY, "2026-11-23T14:30:00Z",
             address={"state": "TX"}), "deny", ["outside_calling_hours"]),
    Scenario("NY number, Panhandle ZIP narrows FL to Central", req(NY, "2026-11-23T13:30:00Z",
             address={"state": "FL", "zip": "32501"}), "deny", ["outside_calling_hours"]),
    Scenario("toll-free without address", req("1-800-555-1234", MON_10_ET), "deny", ["timezone_unknown"]),
    Scenario("toll-free with address", req("1-800-555-1234", "2026-11-23T18:00:00Z",
             address={"state": "CO"}), "allow", []),
    # --- state rules
    Scenario("RI weekday 09:30", req(RI, "2026-11-23T14:30:00Z"), "allow", []),
    Scenario("RI weekday 18:30", req(RI, "2026-11-23T23:30:00Z"), "deny", ["outside_calling_hours"]),
    Scenario("RI Saturday 09:30", req(RI, "2026-11-28T14:30:00Z"), "deny", ["outside_calling_hours"],
             next_allowed_at="2026-11-28T15:00:00Z"),
    Scenario("RI Saturday 10:30", req(RI, "2026-11-28T15:30:00Z"), "allow", []),
    Scenario("RI Sunday", req(RI, "2026-11-29T16:00:00Z"), "deny", ["restricted_day"],
             next_allowed_at="2026-11-30T14:00:00Z"),
    Scenario("RI Thanksgiving", req(RI, "2026-11-26T16:00:00Z"), "deny", ["restricted_day"]),
    Scenario("RI Sunday informational call", req(RI, "2026-11-29T16:00:00Z", purpose="informational"),
             "allow", []),
    Scenario("TX Sunday 11:00", req(TX, "2026-11-29T17:00:00Z"), "deny", ["outside_calling_hours"],
             next_allowed_at="2026-11-29T18:00:00Z"),
    Scenario("TX Sunday 12:30", req(TX, "2026-11-29T18:30:00Z"), "allow", []),
    Scenario("TX weekday 08:30", req(TX, "2026-11-23T14:30:00Z"), "deny", ["outside_calling_hours"]),
    Scenario("LA Mardi Gras", req(LA, "2026-02-17T16:00:00Z"), "deny", ["restricted_day"],
             next_allowed_at="2026-02-18T14:00:00Z"),
    Scenario("LA day after Mardi Gras", req(LA, "2026-02-18T16:00:00Z"), "allow", []),
    Scenario("LA Sunday", req(LA, "2026-11-22T16:00:00Z"), "deny", ["restricted_day"]),
    Scenario("LA 2101: no holiday data", req(LA, "2101-02-15T16:00:00Z"), "deny", ["holiday_data_missing"]),
    Scenario("PA Thanksgiving", req(PA, "2026-11-26T16:00:00Z"), "deny", ["restricted_day"]),
    Scenario("PA Thanksgiving, debt collection", req(PA, "2026-11-26T16:00:00Z",
             purpose="debt_collection", debt_ref="D-PA"), "allow", []),
    Scenario("FL 20:30", req(MIA, "2026-11-24T01:30:00Z"), "deny", ["outside_calling_hours"]),
    Scenario("FL 19:30", req(MIA, "2026-11-24T00:30:00Z"), "allow", []),
    Scenario("NY number with LA address on Sunday", req(NY, "2026-11-22T16:00:00Z",
             address={"state": "LA"}), "deny", ["restricted_day"]),
    # --- DNC
    Scenario("national DNC", req(NY, MON_10_ET), "deny", ["national_dnc"], [national("2125551234")]),
    Scenario("national DNC, informational", req(NY, MON_10_ET, purpose="informational"), "allow", [],
             [national("2125551234")]),
    Scenario("national DNC, purchase 100 days ago", req(NY, MON_10_ET), "allow", [],
             [national("2125551234"), ebr(NY, "purchase", "2026-08-15T12:00:00Z")]),
    Scenario("national DNC, purchase 600 days ago", req(NY, MON_10_ET), "deny", ["national_dnc"],
             [national("2125551234"), ebr(NY, "purchase", "2025-04-01T12:00:00Z")]),
    Scenario("national DNC, inquiry 60 days ago", req(NY, MON_10_ET), "allow", [],
             [national("2125551234"), ebr(NY, "inquiry", "2026-09-24T12:00:00Z")]),
    Scenario("national DNC, inquiry 100 days ago", req(NY, MON_10_ET), "deny", ["national_dnc"],
             [national("2125551234"), ebr(NY, "inquiry", "2026-08-15T12:00:00Z")]),
    Scenario("national DNC, written consent", req(NY, MON_10_ET), "allow", [],
             [national("2125551234"), consent(NY, "written")]),
    Scenario("national DNC, express (not written) consent", req(NY, MON_10_ET), "deny", ["national_dnc"],
             [national("2125551234"), consent(NY, "express")]),
    Scenario("registry 40 days old", req(NY, MON_10_ET), "deny", ["registry_stale"],
             [national("2015550100", age_days=40)]),
    Scenario("registry 30 days old", req(NY, MON_10_ET), "allow", [], [national("2015550100", age_days=30)]),
    Scenario("stale registry, informational", req(NY, MON_10_ET, purpose="informational"), "allow", [],
             [national("2015550100", age_days=40)]),
    Scenario("area code not subscribed", req("(720) 555-1234", "2026-11-23T18:00:00Z"), "deny",
             ["registry_not_subscribed"]),
    Scenario("state DNC", req(TX, "2026-11-23T16:00:00Z"), "deny", ["state_dnc"],
             [lambda e: e.load("state:TX", ["214-555-1234"])]),
    Scenario("internal DNC denies every purpose", req(NY, MON_10_ET, purpose="informational"), "deny",
             ["internal_dnc"], [lambda e: e.post("/dnc", {"phone": NY, "source": "stop_reply"},
                                                 role="agent", status=201)]),
    Scenario("internal DNC beats EBR", req(NY, MON_10_ET), "deny", ["internal_dnc"],
             [ebr(NY, "purchase", "2026-11-01T12:00:00Z"),
              lambda e: e.post("/dnc", {"phone": NY}, role="agent", status=201)]),
    Scenario("litigator list", req(NY, MON_10_ET, purpose="debt_collection", debt_ref="D1"), "deny",
             ["litigator"], [lambda e: e.load("litigator", ["2125551234"], tenant=True)]),
    Scenario("all problems listed at once", req(NY, "2026-11-23T12:00:00Z", method="autodialer"), "deny",
             ["outside_calling_hours", "internal_dnc", "national_dnc", "no_consent"],
             [national("2125551234"), lambda e: e.post("/dnc", {"phone": NY}, role="agent", status=201)]),
    # --- consent
    Scenario("autodialed marketing to wireless, no consent", req(NY, MON_10_ET, method="autodialer"),
             "deny", ["no_consent"]),
    Scenario("autodialed marketing, express only", req(NY, MON_10_ET, method="autodialer"), "deny",
             ["no_consent"], [consent(NY, "express")]),
    Scenario("autodialed marketing, written", req(NY, MON_10_ET, method="autodialer"), "allow", [],
             [consent(NY, "written")]),
    Scenario("consent for another purpose only", req(NY, MON_10_ET, method="autodialer"), "deny",
             ["no_consent"], [consent(NY, "written", purposes=["informational"])]),
    Scenario("autodialed informational, express", req(NY, MON_10_ET, method="autodialer",
             purpose="informational"), "allow", [], [consent(NY, "express")]),
    Scenario("text without consent", req(NY, MON_10_ET, method="sms", purpose="informational"), "deny",
             ["no_consent"]),
    Scenario("consent revoked", req(NY, MON_10_ET, method="autodialer"), "deny", ["consent_revoked"],
             [consent(NY, "written"), lambda e: e.post("/consents/revoke", {"phone": NY}, role="agent",
                                                       status=200)]),
    Scenario("consent given again after revocation", req(NY, MON_10_ET, method="autodialer"), "allow", [],
             [consent(NY, "written"),
              lambda e: e.post("/consents/revoke", {"phone": NY}, role="agent", status=200),
              consent(NY, "written", captured="2026-11-23T14:00:00Z")]),
    Scenario("wrong number voids consent", req(NY, MON_10_ET, method="autodialer"), "deny",
             ["reassigned_number"],
             [consent(NY, "written"), outcome(NY, "wrong_number", "2026-11-10T15:00:00Z")]),
    Scenario("disconnected voids consent", req(NY, MON_10_ET, method="autodialer", purpose="informational"),
             "deny", ["reassigned_number"], [consent(NY, "express"),
                                            outcome(NY, "disconnected", "2026-11-10T15:00:00Z")]),
    Scenario("opt-out outcome adds to the internal list", req(NY, MON_10_ET), "deny", ["internal_dnc"],
             [outcome(NY, "opt_out", "2026-11-20T15:00:00Z")]),
    Scenario("landline marking does not relax texts", req(NY, MON_10_ET, method="sms",
             purpose="informational"), "deny", ["no_consent"], [landline(NY)]),
    Scenario("landline, live autodialed marketing", req(NY, MON_10_ET, method="autodialer"), "allow", [],
             [landline(NY)]),
    Scenario("landline, prerecorded marketing needs written consent", req(NY, MON_10_ET,
             method="prerecorded"), "deny", ["no_consent"], [landline(NY)]),
    Scenario("landline, 3rd prerecorded informational in 30 days", req(NY, MON_10_ET,
             method="prerecorded", purpose="informational"), "allow", [],
             [landline(NY), attempts(NY, ["2026-11-02T15:00:00Z", "2026-11-12T15:00:00Z"],
                                     method="prerecorded", purpose="informational")]),
    Scenario("landline, 4th prerecorded informational in 30 days", req(NY, MON_10_ET,
             method="prerecorded", purpose="informational"), "deny", ["frequency_cap"],
             [landline(NY), attempts(NY, ["2026-11-02T15:00:00Z", "2026-11-12T15:00:00Z",
                                          "2026-11-20T15:00:00Z"], method="prerecorded",
                                     purpose="informational")],
             next_allowed_at="2026-12-02T15:00:00.000001Z"),
    Scenario("wireless, prerecorded informational with consent", req(NY, MON_10_ET,
             method="prerecorded", purpose="informational"), "allow", [], [consent(NY, "express")]),
    # --- frequency
    Scenario("FL: 4th marketing call in 24h on the subject", req(MIA, MON_10_ET, campaign="winter"), "deny",
             ["frequency_cap"], [attempts(MIA, ["2026-11-22T16:00:00Z", "2026-11-23T13:00:00Z",
                                                "2026-11-23T14:00:00Z"], campaign="winter")],
             next_allowed_at="2026-11-23T16:00:00.000001Z"),
    Scenario("FL: another subject", req(MIA, MON_10_ET, campaign="spring"), "allow", [],
             [attempts(MIA, ["2026-11-23T12:00:00Z", "2026-11-23T13:00:00Z", "2026-11-23T14:00:00Z"],
                       campaign="winter")]),
    Scenario("FL cap counts the person across numbers", req(MIA, MON_10_ET, campaign="w", customer_ref="c9"),
             "deny", ["frequency_cap"],
             [attempts("305-555-0001", ["2026-11-23T12:00:00Z", "2026-11-23T13:00:00Z"], campaign="w",
                       customer_ref="c9"),
              attempts("305-555-0002", ["2026-11-23T14:00:00Z"], campaign="w", customer_ref="c9")]),
    Scenario("OK cap", req(OKC, MON_10_ET), "deny", ["frequency_cap"],
             [attempts(OKC, ["2026-11-23T14:00:00Z", "2026-11-23T14:30:00Z", "2026-11-23T14:50:00Z"])]),
    Scenario("Reg F: 7th attempt", req(NY, MON_10_ET, purpose="debt_collection", debt_ref="D7"), "allow", [],
             [attempts(NY, [f"2026-11-{d}T15:00:00Z" for d in (17, 18, 19, 20, 21, 22)],
                       purpose="debt_collection", debt_ref="D7")]),
    Scenario("Reg F: 8th attempt across two numbers", req(NY, MON_10_ET, purpose="debt_collection",
             debt_ref="D8"), "deny", ["reg_f_7in7"],
             [attempts(NY, [f"2026-11-{d}T15:00:00Z" for d in (17, 18, 19, 20)],
                       purpose="debt_collection", debt_ref="D8"),
              attempts("(212) 555-9999", [f"2026-11-{d}T15:00:00Z" for d in (21, 22, 23)],
                       purpose="debt_collection", debt_ref="D8")]),
    Scenario("Reg F: the oldest attempt is 7 days and 1 s ago", req(NY, MON_10_ET,
             purpose="debt_collection", debt_ref="D9"), "allow", [],
             [attempts(NY, ["2026-11-16T14:59:59Z"]
                       + [f"2026-11-{d}T15:00:00Z" for d in (18, 19, 20, 21, 22, 23)],
                       purpose="debt_collection", debt_ref="D9")]),
    Scenario("Reg F: texts are not counted", req(NY, MON_10_ET, purpose="debt_collection", debt_ref="DT"),
             "allow", [], [attempts(NY, [f"2026-11-{d}T15:00:00Z" for d in (17, 18, 19, 20, 21, 22, 23)],
                                    purpose="debt_collection", debt_ref="DT", method="sms")]),
    Scenario("Reg F: day 7 after a conversation", req(NY, "2026-11-22T15:00:00Z", purpose="debt_collection",
             debt_ref="DC"), "deny", ["reg_f_after_conversation"],
             [outcome(NY, "connected", "2026-11-16T15:00:00Z", debt_ref="DC")],
             next_allowed_at="2026-11-23T13:00:00Z"),
    Scenario("Reg F: day 8 after a conversation", req(NY, "2026-11-23T15:00:00Z", purpose="debt_collection",
             debt_ref="DC"), "allow", [], [outcome(NY, "connected", "2026-11-16T15:00:00Z", debt_ref="DC")]),
    Scenario("Reg F: a conversation about another debt", req(NY, "2026-11-20T15:00:00Z",
             purpose="debt_collection", debt_ref="DX"), "allow", [],
             [outcome(NY, "connected", "2026-11-19T15:00:00Z", debt_ref="DY")]),
    Scenario("MA: 3rd collection contact in 7 days (texts count)", req(MA, MON_10_ET,
             purpose="debt_collection", debt_ref="DMA"), "deny", ["frequency_cap"],
             [attempts(MA, ["2026-11-18T15:00:00Z"], purpose="debt_collection", debt_ref="DMA"),
              attempts(MA, ["2026-11-20T15:00:00Z"], purpose="debt_collection", debt_ref="DMA",
                       method="sms")]),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(env: Any, sc: Scenario) -> None:
    for step in sc.setup:
        step(env)
    out = env.check(**sc.request)
    assert (out["decision"], sorted(out["reasons"])) == (sc.decision, sorted(sc.reasons)), out
    if sc.next_allowed_at is not None:
        assert out["next_allowed_at"] == sc.next_allowed_at, out
    if sc.decision == "allow":
        assert out["next_allowed_at"] is not None
