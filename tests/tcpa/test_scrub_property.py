"""Property: the vectorized scrub gives the single check's decision and reasons for every number."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.auth.service import create_key, create_tenant
from guard.db import transaction
from guard.tcpa import scrub as scrub_mod
from guard.tcpa.registry import index_for
from tests.tcpa.helpers_tcpa import load_list

pytestmark = pytest.mark.integration

POOL = ["+12125551201", "+12125551202", "(212) 555-1203", "+13055551204", "+13055551205", "+12145551206",
        "+18504345207", "+12085551208", "+18005551209", "+14165551210", "555-12", "+15045551211",
        "+16175551212", "+14015551213", "+17205551214", "212.555.1215", "+12155551216", "+19075551217"]
TIMES = ["2026-11-23T15:00:00Z", "2026-11-23T12:30:00Z", "2026-11-29T17:30:00Z", "2026-11-26T16:00:00Z",
         "2026-11-24T01:30:00Z", "2026-03-08T12:30:00Z"]


def _tenant(rt: Any) -> tuple[str, dict[str, str]]:
    with transaction(rt.sessions) as s:
        t = create_tenant(s, f"prop-{uuid.uuid4().hex[:10]}", clock=rt.clock)
        _, token = create_key(s, tenant_id=t.id, roles=["supervisor"], clock=rt.clock, environment="test",
                              pepper=rt.keyring.current("api_key_pepper").material)
        _, admin = create_key(s, tenant_id=t.id, roles=["admin"], clock=rt.clock, environment="test",
                              pepper=rt.keyring.current("api_key_pepper").material)
    return t.id, {"sup": token, "admin": admin}


number_setup = st.fixed_dictionaries({
    "national": st.booleans(), "internal": st.booleans(), "landline": st.booleans(),
    "consent": st.sampled_from(["none", "express", "written", "revoked", "wrong_number"]),
    "attempts": st.integers(0, 4), "ebr": st.booleans()})
case = st.fixed_dictionaries({
    "numbers": st.lists(st.sampled_from(POOL), min_size=1, max_size=10),
    "setup": st.lists(number_setup, min_size=10, max_size=10),
    "purpose": st.sampled_from(["telemarketing", "informational", "debt_collection"]),
    "method": st.sampled_from(["manual", "autodialer", "prerecorded", "sms"]),
    "at": st.sampled_from(TIMES),
    "campaign": st.sampled_from([None, "c1"]),
    "address": st.sampled_from([None, {"state": "FL"}, {"state": "TX", "zip": "75201"}]),
})


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(c=case)
def test_scrub_equals_check(rt: Any, client: Any, clock: Any, tmp_path: Path, c: dict[str, Any]) -> None:
    tenant_id, keys = _tenant(rt)
    sup = {"Authorization": f"Bearer {keys['sup']}", "X-Guard-Actor": "prop"}
    admin = {"Authorization": f"Bearer {keys['admin']}", "X-Guard-Actor": "prop"}
    codes = [212, 305, 214, 850, 208, 504, 617, 401, 215, 907]
    client.post("/v1/dnc/subscriptions", json={"area_codes": codes}, headers=admin)
    nat: list[str] = []
    at = datetime.fromisoformat(c["at"].replace("Z", "+00:00")).astimezone(UTC)
    for phone, s in zip(POOL, c["setup"], strict=False):
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) == 11 and s["national"]:
            nat.append(digits[1:])
        body = {"phone": phone}
        if len(digits) != 11:
            continue
        if s["internal"]:
            client.post("/v1/dnc", json=body, headers=sup)
        if s["landline"]:
            client.post("/v1/numbers/line-type", json={**body, "line_type": "landline"}, headers=sup)
        if s["consent"] != "none":
            client.post("/v1/consents", headers=sup, json={
                **body, "kind": "express" if s["consent"] == "express" else "written", "source": "web",
                "channel": "web", "text_shown": "ok", "captured_at": "2026-01-01T00:00:00Z"})
        if s["consent"] == "revoked":
            client.post("/v1/consents/revoke", json=body, headers=sup)
        if s["consent"] == "wrong_number":
            client.post("/v1/calls/outcome", json={**body, "outcome": "wrong_number",
                                                   "at": "2026-02-01T00:00:00Z"}, headers=sup)
        if s["ebr"]:
            client.post("/v1/relationships", json={**body, "customer_ref": "x", "kind": "purchase",
                                                   "at": "2026-01-05T00:00:00Z"}, headers=sup)
        if s["attempts"]:
            client.post("/v1/calls/attempts", headers=sup, json={"attempts": [
                {**body, "purpose": c["purpose"], "method": "manual", "campaign": "c1",
                 "debt_ref": "D1" if c["purpose"] == "debt_collection" else None,
                 "at": (min(at, clock.now()) - timedelta(hours=k + 1)).isoformat()}
                for k in range(s["attempts"])]})
    load_list(rt, "national", nat or ["2015550100"], file_date=clock.now(), tmp=tmp_path)
    ctx_body: dict[str, Any] = {"purpose": c["purpose"], "method": c["method"], "at": c["at"]}
    if c["campaign"]:
        ctx_body["campaign"] = c["campaign"]
    if c["purpose"] == "debt_collection":
        ctx_body["debt_ref"] = "D1"
    if c["address"]:
        ctx_body["address"] = c["address"]
    expected = []
    for phone in c["numbers"]:
        resp = client.post("/v1/calls/check", json={"phone": phone, **ctx_body}, headers=sup)
        assert resp.status_code == 200, resp.get_json()
        out = resp.get_json()
        expected.append((out["decision"], out["reasons"]))
    ctx = scrub_mod.ScrubContext(purpose=c["purpose"], method=c["method"], at=at, campaign=c["campaign"],
                                 debt_ref=ctx_body.get("debt_ref"),
                                 state=(c["address"] or {}).get("state"), zip=(c["address"] or {}).get("zip"))
    index = index_for(rt)
    with transaction(rt.sessions) as s:
        policy = rt.policies_for(s, tenant_id).get("outbound")
        res = scrub_mod.scrub(s, tenant_id=tenant_id, policy=policy, ctx=ctx, phones=c["numbers"],
                              now=clock.now(), index=index, table=scrub_mod.prefix_table(rt.extras))
    got = [("deny" if res.masks[i] else "allow", res.reasons(i)) for i in range(len(c["numbers"]))]
    assert got == expected
