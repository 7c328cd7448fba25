"""POST /v1/calls/scrub: JSON and CSV in, one decision per number out, one audit event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from guard.audit.models import AuditEvent
from guard.db import transaction

pytestmark = pytest.mark.integration


def test_json_scrub_streams_decisions_and_one_audit_event(env: Any) -> None:
    env.national(["2125551234"])
    numbers = ["+12125551234", "+12125551235", "nope", "+14165551234", "(212) 555-1236"]
    resp = env.client.post("/v1/calls/scrub", headers=env.tenant.headers("dialer"), json={
        "numbers": numbers, "purpose": "telemarketing", "method": "manual", "at": "2026-11-23T15:00:00Z"})
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    lines = [json.loads(x) for x in resp.get_data(as_text=True).splitlines()]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert [(r["decision"], r["reasons"]) for r in rows] == [
        ("deny", ["national_dnc"]), ("allow", []), ("deny", ["invalid_number"]),
        ("deny", ["unsupported_jurisdiction"]), ("allow", [])]
    assert rows[4]["phone_e164"] == "+12125551236"
    assert summary["totals"] == {"allow": 2, "deny": 3, "invalid_number": 1, "national_dnc": 1,
                                 "unsupported_jurisdiction": 1}
    with transaction(env.rt.sessions) as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == env.tenant.id,
                                                    AuditEvent.action == "tcpa.call.scrub")).scalars().all()
        assert len(events) == 1
        ev = events[0]
        assert ev.id == summary["audit_event"]
        assert ev.details["digest"]["root"] == summary["digest"]
        assert ev.details["count"] == 5
        assert "2125551234" not in json.dumps(ev.details)
    # Same rules as single checks.
    for n, row in zip(numbers, rows, strict=True):
        one = env.check(phone=n, at="2026-11-23T15:00:00Z")
        assert (one["decision"], one["reasons"]) == (row["decision"], row["reasons"])


def test_csv_scrub(env: Any) -> None:
    body = "phone\n+12125551234\n(305) 555-1234\n"
    url = "/v1/calls/scrub?purpose=informational&method=autodialer&at=2026-11-23T15:00:00Z"
    resp = env.client.post(url, data=body, headers={**env.tenant.headers("supervisor"),
                                                    "Content-Type": "text/csv"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).splitlines()
    assert lines[0] == "index,phone_e164,decision,reasons"
    assert lines[1] == "0,+12125551234,deny,no_consent"
    assert lines[2] == "1,+13055551234,deny,no_consent"
    assert lines[3].startswith("# summary ")


def test_scrub_validation_and_roles(env: Any) -> None:
    resp = env.client.post("/v1/calls/scrub", headers=env.tenant.headers("dialer"),
                           json={"numbers": [], "purpose": "telemarketing", "method": "manual"})
    assert resp.status_code == 422
    resp = env.client.post("/v1/calls/scrub?purpose=x&method=manual", data="2125551234\n",
                           headers={**env.tenant.headers("dialer"), "Content-Type": "text/csv"})
    assert resp.status_code == 422 and resp.get_json()["errors"][0]["loc"] == ["query", "purpose"]
    resp = env.client.post("/v1/calls/scrub", headers=env.tenant.headers("agent"),
                           json={"numbers": ["2125551234"], "purpose": "telemarketing", "method": "manual"})
    assert resp.status_code == 403


def test_cli_scrub(env: Any, tmp_path: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from click.testing import CliRunner

    from guard.cli import cli
    from tests.tcpa.helpers_tcpa import load_list

    # The CLI runs on the system clock: its registry must be fresh relative to that clock.
    load_list(env.rt, "national", ["2125551234"], file_date=datetime.now(UTC), tmp=tmp_path)
    monkeypatch.setenv("GUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GUARD_INSTANCE_DIR", str(settings.instance_dir))
    monkeypatch.setenv("GUARD_KEYRING_PATH", str(settings.keyring_path))
    src = tmp_path / "list.csv"
    src.write_text("phone\n+12125551234\n2125551235\n")
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(cli, ["calls", "scrub", str(src), "--tenant", env.tenant.id, "--purpose",
                                   "telemarketing", "--method", "manual", "--at", "2026-11-23T15:00:00Z",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines() == ["index,phone_e164,decision,reasons",
                                            "0,+12125551234,deny,national_dnc", "1,+12125551235,allow,"]
