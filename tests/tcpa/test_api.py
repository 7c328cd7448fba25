"""The outbound API around the decision: audit, validation, recording, registries, isolation."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from guard.audit.models import AuditEvent
from guard.db import transaction
from guard.tcpa import geo
from guard.tcpa.models import CallAttempt, RegistryVersion
from guard.tcpa.registry import ImportRejected, parse_file

pytestmark = pytest.mark.integration
NY = "+12125551234"


def test_audit_event_holds_reasons_versions_and_no_raw_number(env: Any) -> None:
    env.national(["2125551234"])
    out = env.check(phone="(212) 555-1234", customer_ref="cust-42", campaign="winter")
    assert out["decision"] == "deny" and out["reasons"] == ["national_dnc"]
    with transaction(env.rt.sessions) as s:
        ev = s.get(AuditEvent, (env.tenant.id, s.execute(select(AuditEvent.seq).where(
            AuditEvent.id == out["audit_event"])).scalar_one()))
        assert ev is not None
        stored = json.dumps({"details": ev.details, "subject": ev.subject, "reasons": ev.reasons})
    assert ev.action == "tcpa.call.check" and ev.outcome == "deny"
    assert ev.reasons == ["national_dnc"] and ev.policy_version == out["policy_version"]
    assert ev.details["registry_versions"]["national"] == out["registry_versions"]["national"]
    assert ev.subject and ev.subject.startswith("sp_")
    for raw in ("2125551234", "555-1234", "cust-42"):
        assert raw not in stored


def test_local_window_is_the_intersection_of_zones(env: Any) -> None:
    out = env.check(phone="208-555-1234", at="2026-11-23T18:00:00Z")
    assert out["local_window"]["timezones"] == ["America/Boise", "America/Los_Angeles"]
    # Opens 08:00 PST (16:00Z), closes 21:00 MST (04:00Z next day).
    assert out["local_window"]["opens_at"] == "2026-11-23T16:00:00Z"
    assert out["local_window"]["closes_at"] == "2026-11-24T04:00:00Z"


@pytest.mark.parametrize("body,field", [
    ({"phone": NY, "purpose": "robocall", "method": "manual"}, "purpose"),
    ({"phone": NY, "purpose": "telemarketing", "method": "fax"}, "method"),
    ({"phone": NY, "purpose": "debt_collection", "method": "manual"}, "body"),
    ({"phone": NY, "purpose": "telemarketing", "method": "manual", "at": "2026-11-23T10:00:00"}, "at"),
    ({"phone": NY, "purpose": "telemarketing", "method": "manual", "address": {"state": "ZZ"}}, "state"),
    ({"phone": NY, "purpose": "telemarketing", "method": "manual", "address": {"zip": "1"}}, "zip"),
    ({"purpose": "telemarketing", "method": "manual"}, "phone"),
    ({"phone": NY, "purpose": "telemarketing", "method": "manual", "extra": 1}, "extra"),
])
def test_bad_input_is_422_naming_the_field(env: Any, body: dict[str, Any], field: str) -> None:
    resp = env.client.post("/v1/calls/check", json=body, headers=env.tenant.headers("dialer"))
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert any(field in [str(p) for p in e["loc"]] for e in resp.get_json()["errors"])
    assert "2125551234" not in resp.get_data(as_text=True)


def test_record_with_a_planned_time_is_refused(env: Any) -> None:
    resp = env.client.post("/v1/calls/check", headers=env.tenant.headers("dialer"), json={
        "phone": NY, "purpose": "telemarketing", "method": "manual", "record": True,
        "at": "2026-11-24T15:00:00Z"})
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["loc"] == ["body", "at"]


def test_record_counts_toward_caps(env: Any) -> None:
    miami = "305-555-7777"
    for _ in range(3):
        out = env.check(phone=miami, campaign="c", record=True)
        assert out["decision"] == "allow" and out["attempt_id"].startswith("att_")
    out = env.check(phone=miami, campaign="c", record=True)
    assert out["decision"] == "deny" and out["reasons"] == ["frequency_cap"]
    assert out["attempt_id"] is None
    with transaction(env.rt.sessions) as s:
        n = s.execute(select(func.count()).select_from(CallAttempt).where(
            CallAttempt.tenant_id == env.tenant.id)).scalar_one()
    assert n == 3


def test_revocation_takes_effect_for_the_next_check(env: Any) -> None:
    env.post("/consents", {"phone": NY, "kind": "written", "source": "web", "channel": "web",
                           "text_shown": "yes", "captured_at": "2026-11-01T00:00:00Z"},
             role="agent", status=201)
    assert env.check(phone=NY, method="autodialer")["decision"] == "allow"
    env.post("/consents/revoke", {"phone": "212.555.1234", "channel": "sms"}, role="dialer", status=200)
    assert env.check(phone=NY, method="autodialer")["reasons"] == ["consent_revoked"]


def test_another_tenants_records_do_not_apply(env: Any, other_tenant: Any) -> None:
    env.client.post("/v1/dnc", json={"phone": NY}, headers=other_tenant.headers("agent"))
    env.client.post("/v1/consents", headers=other_tenant.headers("agent"), json={
        "phone": NY, "kind": "written", "source": "web", "channel": "web", "text_shown": "yes",
        "captured_at": "2026-11-01T00:00:00Z"})
    out = env.check(phone=NY, method="autodialer")
    assert out["reasons"] == ["no_consent"]


def test_roles(env: Any) -> None:
    body = {"phone": NY, "purpose": "telemarketing", "method": "manual"}
    for role in ("dialer", "agent", "ai_agent", "supervisor"):
        resp = env.client.post("/v1/calls/check", json=body, headers=env.tenant.headers(role))
        assert resp.status_code == 200
    for role in ("auditor", "privacy_officer"):
        resp = env.client.post("/v1/calls/check", json=body, headers=env.tenant.headers(role))
        assert resp.status_code == 403
    assert env.client.get("/v1/dnc/status", headers=env.tenant.headers("dialer")).status_code == 403


def test_tenant_extra_holiday(env: Any) -> None:
    la = "504-555-1234"
    assert env.check(phone=la, at="2026-11-24T16:00:00Z")["decision"] == "allow"
    resp = env.client.put("/v1/policies/overrides", headers=env.tenant.headers("admin"), json={
        "overrides": {"outbound": {"extra_holidays": [
            {"date": "2026-11-24", "states": ["LA"], "name": "Governor's emergency proclamation"}]}}})
    assert resp.status_code == 200, resp.get_json()
    env.rt.policies.forget(env.tenant.id)
    out = env.check(phone=la, at="2026-11-24T16:00:00Z")
    assert out["reasons"] == ["restricted_day"]


def test_tenant_cannot_widen_the_federal_window(env: Any) -> None:
    resp = env.client.put("/v1/policies/overrides", headers=env.tenant.headers("admin"), json={
        "overrides": {"outbound": {"federal_window": {"start": "07:00", "end": "21:00"}}}})
    assert resp.status_code == 422


def test_a_rule_that_errs_denies(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(state: str, year: int) -> frozenset[Any]:
        raise RuntimeError("holiday backend broke")

    monkeypatch.setattr(geo, "state_holidays", boom)
    out = env.check(phone="504-555-1234", at="2026-11-24T16:00:00Z")
    assert out["decision"] == "deny" and "rule_error" in out["reasons"]


def test_no_national_registry_fails_closed(env: Any) -> None:
    with transaction(env.rt.sessions) as s:
        for v in s.execute(select(RegistryVersion).where(RegistryVersion.list_name == "national",
                                                         RegistryVersion.status == "active")).scalars():
            v.status = "superseded"
    try:
        assert env.check(phone=NY)["reasons"] == ["registry_stale"]
    finally:
        env.national(["2015550100"])


def test_dnc_status(env: Any) -> None:
    env.clock.advance(days=2)
    out = env.client.get("/v1/dnc/status", headers=env.tenant.headers("admin")).get_json()
    nat = next(x for x in out["lists"] if x["list"] == "national")
    assert nat["count"] == 1 and nat["age_days"] == 3.0 and nat["stale"] is False


# ----------------------------------------------------------------------------- import


def test_import_with_junk_lines_changes_nothing(env: Any, tmp_path: Path) -> None:
    env.national(["2125551234"])
    bad = tmp_path / "bad.txt"
    bad.write_text("2125550000\n212,5550001\nhello\n2125550002\n12345\n")
    with pytest.raises(ImportRejected) as info:
        parse_file(bad, changes=False)
    assert [line for line, _ in info.value.errors] == [3, 5]
    assert env.check(phone=NY)["reasons"] == ["national_dnc"]


def test_cli_import_full_changes_and_junk(env: Any, tmp_path: Path, settings: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.cli import cli

    monkeypatch.setenv("GUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GUARD_INSTANCE_DIR", str(settings.instance_dir))
    monkeypatch.setenv("GUARD_KEYRING_PATH", str(settings.keyring_path))
    runner = CliRunner()
    full = tmp_path / "full.txt"
    full.write_text("212,5551234\n2125550100\n")
    day = (env.clock.now() - timedelta(days=1)).date().isoformat()
    res = runner.invoke(cli, ["dnc", "import", "--list", "national", str(full), "--date", day])
    assert res.exit_code == 0, res.output
    assert "2 numbers" in res.output
    assert env.check(phone=NY)["reasons"] == ["national_dnc"]
    changes = tmp_path / "changes.txt"
    changes.write_text("212,5551234,D\n2125550200,A\n")
    res = runner.invoke(cli, ["dnc", "import", "--list", "national", "--changes", str(changes),
                                 "--date", day])
    assert res.exit_code == 0, res.output
    assert env.check(phone=NY)["decision"] == "allow"
    assert env.check(phone="212-555-0200")["reasons"] == ["national_dnc"]
    junk = tmp_path / "junk.txt"
    junk.write_text("2125551234\nnot a number\n")
    res = runner.invoke(cli, ["dnc", "import", "--list", "national", str(junk), "--date", day])
    assert res.exit_code == 1
    assert "junk.txt:2:" in res.output
    assert env.check(phone=NY)["decision"] == "allow"  # the previous version is still active
    res = runner.invoke(cli, ["dnc", "import", "--list", "litigator", str(full)])
    assert res.exit_code != 0 and "--tenant" in res.output


def test_stale_after_31_days(env: Any) -> None:
    env.national(["2015550100"], age_days=0)
    env.clock.advance(days=31)
    assert env.check(phone=NY)["decision"] == "allow"
    env.clock.advance(hours=1)
    assert env.check(phone=NY)["reasons"] == ["registry_stale"]


def test_readyz_reports_holiday_data(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    body = env.client.get("/readyz").get_json()
    assert body["checks"]["tcpa_holidays"] == "ok"

    def missing(state: str, year: int) -> frozenset[Any]:
        if state == "LA" and year == 2027:
            raise geo.HolidayDataMissing("LA 2027")
        return frozenset()

    monkeypatch.setattr(geo, "state_holidays", missing)
    body = env.client.get("/readyz").get_json()
    assert body["checks"]["tcpa_holidays"] == "missing: LA 2027"


def test_registry_index_files_are_shared_by_workers(env: Any, tmp_path: Path) -> None:
    from guard.tcpa.registry import RegistryIndex

    vid = env.national(["2125551234", "2125550000"])
    root = tmp_path / "dnc"
    first = RegistryIndex(root)
    with transaction(env.rt.sessions) as s:
        assert first.contains(s, vid, 212, 5551234) is True
        assert first.contains(s, vid, 212, 5551235) is False
    assert (root / vid / "212.sorted").exists()
    # Another worker on the host maps the same file: no database read at all.
    second = RegistryIndex(root)
    assert second.contains(None, vid, 212, 5550000) is True  # type: ignore[arg-type]
    newer = env.national(["2125559999"])
    with transaction(env.rt.sessions) as s:
        assert second.contains(s, newer, 212, 5551234) is False
    second.forget([newer])
    assert not (root / vid).exists() and (root / newer).exists()
