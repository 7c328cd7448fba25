"""API keys: format, hashed storage, expiry, revocation reaching every worker within 1 s."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, text

from guard.audit.models import AuditEvent
from guard.audit.service import SYSTEM_TENANT_ID
from guard.auth.failures import flush_unknown_keys
from guard.auth.models import ApiKey
from guard.auth.service import KeyCache, revoke_key
from guard.clock import FixedClock
from guard.counters import MemoryCounters, RedisCounters
from guard.db import transaction
from guard.runtime import Runtime
from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration


def test_key_format_and_storage(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    r = app.test_client().post("/v1/keys", json={"roles": ["dialer", "agent"], "label": "dialer-1"},
                               headers=tenant.headers("admin"))
    assert r.status_code == 201
    body = r.get_json()
    token = body["key"]
    assert re.fullmatch(r"gk_live_[0-9A-Za-z]{36}", token)
    assert body["id"] == "key_" + token[8:20]
    with rt.engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(text("SELECT * FROM api_keys")) for v in row)
    assert token not in dump and token[20:] not in dump
    listed = app.test_client().get("/v1/keys", headers=tenant.headers("admin")).get_json()["keys"]
    assert token not in str(listed) and body["id"] in {k["id"] for k in listed}
    # The new key works at once, with the roles it was given.
    me = app.test_client().get("/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert me["roles"] == ["dialer", "agent"] and me["tenant_id"] == tenant.id


def test_key_expires(app: Flask, clock: FixedClock, tenant: TenantKeys) -> None:
    client = app.test_client()
    exp = (clock.now() + timedelta(hours=1)).isoformat()
    token = client.post("/v1/keys", json={"roles": ["agent"], "expires_at": exp},
                        headers=tenant.headers("admin")).get_json()["key"]
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/me", headers=h).status_code == 200
    clock.advance(hours=1)
    r = client.get("/v1/me", headers=h)
    assert r.status_code == 401 and r.get_json()["reasons"] == ["key_expired"]
    past = (clock.now() - timedelta(minutes=1)).isoformat()
    assert client.post("/v1/keys", json={"roles": ["agent"], "expires_at": past},
                       headers=tenant.headers("admin")).status_code == 422


def test_revocation_reaches_other_workers_within_one_second(app: Flask, rt: Runtime,
                                                             tenant: TenantKeys) -> None:
    ticks = [1000.0]
    rt.key_cache = KeyCache(rt.settings.key_cache_seconds, monotonic=lambda: ticks[0])
    client = app.test_client()
    h = tenant.headers("agent")
    assert client.get("/v1/me", headers=h).status_code == 200  # now cached in this worker
    # Another worker (or the CLI) revokes the key: this worker's cache does not know yet.
    with transaction(rt.sessions) as s:
        revoke_key(s, tenant.key_ids["agent"], clock=rt.clock)
    ticks[0] += 0.5
    assert client.get("/v1/me", headers=h).status_code == 200
    ticks[0] += 0.5  # one second after caching: the row is read again
    r = client.get("/v1/me", headers=h)
    assert r.status_code == 401 and r.get_json()["reasons"] == ["key_revoked"]


def test_revocation_in_this_worker_is_immediate(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    assert client.get("/v1/me", headers=tenant.headers("agent")).status_code == 200
    r = client.delete(f"/v1/keys/{tenant.key_ids['agent']}", headers=tenant.headers("admin"))
    assert r.status_code == 200 and r.get_json()["revoked_at"]
    assert client.get("/v1/me", headers=tenant.headers("agent")).status_code == 401


def test_tampered_secret_is_unknown(app: Flask, tenant: TenantKeys) -> None:
    token = tenant.keys["agent"]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    r = app.test_client().get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.get_json()["reasons"] == ["key_unknown"]


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest, redis_prefix: str):  # type: ignore[no-untyped-def]
    import os

    if request.param == "memory":
        return MemoryCounters()
    url = os.environ.get("GUARD_TEST_REDIS_URL")
    if not url:
        pytest.skip("GUARD_TEST_REDIS_URL is not set")
    import uuid

    return RedisCounters(url, f"{redis_prefix}{uuid.uuid4().hex[:8]}:")


def test_unknown_keys_are_audited_in_aggregate(app: Flask, rt: Runtime, clock: FixedClock,
                                               counters) -> None:  # type: ignore[no-untyped-def]
    rt.counters = counters
    client = app.test_client()
    clock.set(clock.now().replace(second=5))
    bogus = {"Authorization": "Bearer gk_live_" + "Z" * 36}
    for _ in range(25):
        assert client.get("/v1/me", headers=bogus, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 401
    for _ in range(3):
        client.get("/v1/me", headers=bogus, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    with transaction(rt.sessions) as s:
        before = s.execute(select(AuditEvent.seq).where(
            AuditEvent.tenant_id == SYSTEM_TENANT_ID).order_by(AuditEvent.seq.desc()).limit(1)).scalar()
    assert flush_unknown_keys(rt) == 0  # the minute is still open
    clock.advance(minutes=1)
    # The first failure of the new minute flushes the closed one: one event per source.
    client.get("/v1/me", headers=bogus, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    with transaction(rt.sessions) as s:
        events = s.execute(select(AuditEvent).where(
            AuditEvent.tenant_id == SYSTEM_TENANT_ID, AuditEvent.seq > (before or 0))
            .order_by(AuditEvent.seq)).scalars().all()
    details = [e.details for e in events if e.action == "auth.key.unknown"]
    got = {d["source"]: d["count"] for d in details}
    assert got == {"203.0.113.9": 25, "198.51.100.1": 3}


def test_cli_key_lifecycle(rt: Runtime, tenant: TenantKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.cli import cli

    s = rt.settings
    for var, value in (("GUARD_DATABASE_URL", s.database_url), ("GUARD_INSTANCE_DIR", str(s.instance_dir)),
                       ("GUARD_KEYRING_PATH", str(s.keyring_file))):
        monkeypatch.setenv(var, value)
    runner = CliRunner()
    out = runner.invoke(cli, ["keys", "create", "--tenant", tenant.name, "--role", "auditor",
                              "--expires", "30d", "--json"])
    assert out.exit_code == 0, out.output

    created = json.loads(out.output)
    assert created["roles"] == ["auditor"] and created["key"].startswith("gk_live_")
    listed = runner.invoke(cli, ["keys", "list", "--tenant", tenant.name])
    assert created["id"] in listed.output and created["key"] not in listed.output
    assert runner.invoke(cli, ["keys", "revoke", created["id"]]).exit_code == 0
    with transaction(rt.sessions) as session:
        assert session.get(ApiKey, created["id"]).revoked_at is not None  # type: ignore[union-attr]
        actions = session.execute(select(AuditEvent.action).where(
            AuditEvent.tenant_id == tenant.id, AuditEvent.role == "operator")).scalars().all()
    assert "auth.key.create" in actions and "auth.key.revoke" in actions
    bad = runner.invoke(cli, ["keys", "create", "--tenant", "no-such", "--role", "agent"])
    assert bad.exit_code != 0
