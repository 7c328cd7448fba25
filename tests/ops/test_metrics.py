"""GET /metrics: access rules, decision counters, latency histograms, database gauges."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session

from guard import create_app, metrics
from guard.audit.service import append, seal_pending
from guard.clock import FixedClock
from guard.config import Settings
from guard.context import operator
from guard.db import transaction
from guard.runtime import Runtime
from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(body: str, name: str, **labels: str) -> float:
    return samples(body).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(app: Flask, tenant: TenantKeys, role: str = "admin") -> str:
    resp = app.test_client().get("/metrics", headers=tenant.headers(role))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_data(as_text=True)


@pytest.fixture
def public_app(settings: Settings, clock: FixedClock) -> Iterator[Flask]:
    application = create_app(settings.model_copy(update={"metrics_public": True}), clock=clock)
    yield application
    application.extensions["guard"].close()


def test_metrics_need_a_key_with_metrics_read_by_default(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    resp = client.get("/metrics")
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    assert client.get("/metrics", headers=tenant.headers("agent")).status_code == 403
    for role in ("admin", "auditor"):
        resp = client.get("/metrics", headers=tenant.headers(role))
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert resp.headers["Cache-Control"] == "no-store"


def test_public_metrics_show_every_tenant(public_app: Flask, tenant: TenantKeys,
                                          other_tenant: TenantKeys) -> None:
    resp = public_app.test_client().get("/metrics")
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    tenants = {dict(labels).get("tenant") for (name, labels) in samples(body)
               if name == "guard_audit_chain_length"}
    assert {tenant.id, other_tenant.id} <= tenants


def test_a_tenant_key_sees_only_its_own_tenant(app: Flask, rt: Runtime, tenant: TenantKeys,
                                               other_tenant: TenantKeys) -> None:
    with transaction(rt.sessions) as s:
        for _ in range(3):
            append(s, caller=operator(tenant.id), action="test.event", outcome="ok", clock=rt.clock)
    body = scrape(app, tenant)
    lengths = {dict(labels)["tenant"]: v for (name, labels), v in samples(body).items()
               if name == "guard_audit_chain_length"}
    assert lengths == {tenant.id: 3.0}
    assert other_tenant.id not in body

    # A domain's gauge that forgets to filter is filtered anyway.
    @metrics.gauge("guard_test_leaky", "test gauge", ["tenant"])
    def leaky(rt: Runtime, session: Session, only: str | None) -> Iterator[tuple[list[str], float]]:
        yield [tenant.id], 1.0
        yield [other_tenant.id], 2.0

    try:
        body = scrape(app, tenant)
        assert value(body, "guard_test_leaky", tenant=tenant.id) == 1.0
        assert other_tenant.id not in body
    finally:
        metrics.GAUGES.pop("guard_test_leaky")


def test_decisions_counted_by_action_outcome_and_reason_once_committed(
        app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    before = scrape(app, tenant)
    client = app.test_client()
    for _ in range(2):  # an agent may not list keys: a denial with a reason
        assert client.get("/v1/keys", headers=tenant.headers("agent")).status_code == 403
    assert client.get("/v1/audit/events", headers=tenant.headers("auditor")).status_code == 200
    # Sealed but rolled back: the event never happened, so it is not counted.
    session = rt.sessions()
    append(session, caller=operator(tenant.id), action="test.rolled_back", outcome="deny",
           clock=rt.clock, reasons=["nope"])
    seal_pending(session)
    session.rollback()
    session.close()
    after = scrape(app, tenant)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("guard_decisions_total", action="auth.key.list", outcome="deny") == 2
    assert delta("guard_decision_reasons_total", action="auth.key.list", outcome="deny",
                 reason="role_not_permitted") == 2
    assert delta("guard_decisions_total", action="audit.events.read", outcome="ok") == 1
    assert delta("guard_decisions_total", action="test.rolled_back", outcome="deny") == 0
    assert delta("guard_decision_reasons_total", action="test.rolled_back", outcome="deny",
                 reason="nope") == 0


def test_request_latency_per_route_and_status(app: Flask, tenant: TenantKeys) -> None:
    before = scrape(app, tenant)
    client = app.test_client()
    for _ in range(3):
        client.get("/healthz")
    client.get("/no/such/route")
    client.get("/v1/audit/events/evt_missing", headers=tenant.headers("auditor"))
    client.get("/v1/keys")  # refused before the view runs: still timed
    after = scrape(app, tenant)
    name = "guard_http_request_duration_seconds_count"

    def delta(**labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(method="GET", route="/healthz", status="200") == 3
    assert delta(method="GET", route="unmatched", status="404") == 1
    assert delta(method="GET", route="/v1/audit/events/<event_id>", status="404") == 1
    assert delta(method="GET", route="/v1/keys", status="401") == 1
    buckets = [k for k in samples(after) if k[0] == "guard_http_request_duration_seconds_bucket"
               and dict(k[1]).get("route") == "/healthz"]
    assert {dict(k[1])["le"] for k in buckets} >= {"0.005", "1.0", "+Inf"}
    assert "evt_missing" not in after  # paths never become labels


def test_chain_and_job_gauges_come_from_the_database(app: Flask, rt: Runtime, tenant: TenantKeys,
                                                      clock: FixedClock) -> None:
    from guard.jobs import run_job

    with transaction(rt.sessions) as s:
        for _ in range(4):
            append(s, caller=operator(tenant.id), action="test.event", outcome="ok", clock=rt.clock)
    run_job(rt, "audit.verify", force=True)
    clock.advance(seconds=90)
    body = scrape(app, tenant)
    assert value(body, "guard_audit_chain_length", tenant=tenant.id) == 4
    assert value(body, "guard_audit_chain_verified_seq", tenant=tenant.id) == 4
    assert value(body, "guard_audit_chain_broken", tenant=tenant.id) == 0
    assert value(body, "guard_job_last_run_ok", job="audit.verify") == 1
    assert value(body, "guard_job_last_finished_age_seconds", job="audit.verify") == 90
    assert value(body, "guard_job_interval_seconds", job="audit.verify") == 300
    for gauge in metrics.GAUGES:
        assert value(body, "guard_metrics_gauge_up", gauge=gauge) == 1, gauge


def test_a_broken_chain_shows_in_the_gauge(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    from guard.audit.models import AuditEvent
    from guard.jobs import run_job

    with transaction(rt.sessions) as s:
        for _ in range(3):
            append(s, caller=operator(tenant.id), action="test.event", outcome="ok", clock=rt.clock)
    with transaction(rt.sessions) as s:
        s.query(AuditEvent).filter_by(tenant_id=tenant.id, seq=2).update({"outcome": "deny"})
    run_job(rt, "audit.verify", force=True)
    assert value(scrape(app, tenant), "guard_audit_chain_broken", tenant=tenant.id) == 1


def test_a_failing_gauge_is_reported_and_the_others_still_read(app: Flask, tenant: TenantKeys) -> None:
    @metrics.gauge("guard_test_broken", "test gauge")
    def broken(rt: Runtime, session: Session, only: str | None) -> list[tuple[list[str], float]]:
        session.execute(text("SELECT * FROM no_such_table"))
        return []

    try:
        body = scrape(app, tenant)
    finally:
        metrics.GAUGES.pop("guard_test_broken")
    assert value(body, "guard_metrics_gauge_up", gauge="guard_test_broken") == 0
    # Sorted after the failure, and on PostgreSQL read after an aborted statement.
    assert value(body, "guard_metrics_gauge_up", gauge="guard_job_last_run_ok") == 1
    assert value(body, "guard_metrics_gauge_up", gauge="guard_audit_chain_length") == 1


def test_checkpoint_age(rt: Runtime, clock: FixedClock, tenant: TenantKeys) -> None:
    from guard.audit import proofs, service
    from guard.context import operator
    from guard.db import transaction

    with transaction(rt.sessions) as s:
        service.append(s, caller=operator(tenant.id), action="test.m", outcome="ok", clock=rt.clock)
    with transaction(rt.sessions) as s:
        res = service.verify(s, tenant.id, clock=rt.clock)
        proofs.create_checkpoint(s, tenant.id, keyring=rt.keyring, clock=rt.clock,
                                 verified_through=res.verified_through)
    clock.advance(seconds=120)
    with transaction(rt.sessions) as s:
        assert list(metrics._checkpoint_age(rt, s, tenant.id)) == [((tenant.id,), 120.0)]
        assert all(age >= 0 for _, age in metrics._checkpoint_age(rt, s, None))


_WORKER = textwrap.dedent("""
    import sys
    from guard import create_app
    app = create_app()
    client = app.test_client()
    for _ in range(int(sys.argv[1])):
        assert client.get("/healthz").status_code == 200
    if sys.argv[2] == "scrape":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
""")


def test_multiprocess_mode_adds_up_every_worker(settings: Settings, tmp_path: Path) -> None:
    """Under gunicorn each worker writes its own files; any worker's scrape sums them."""
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update({"PROMETHEUS_MULTIPROC_DIR": str(prom), "GUARD_DATABASE_URL": settings.database_url,
                "GUARD_INSTANCE_DIR": str(settings.instance_dir),
                "GUARD_KEYRING_PATH": str(settings.keyring_file), "GUARD_METRICS_PUBLIC": "true",
                "GUARD_LOG_LEVEL": "WARNING"})
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", _WORKER, str(n), "-"], env=env, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", _WORKER, "1", "scrape"], env=env, check=True,
                         timeout=60, capture_output=True, text=True).stdout
    assert value(out, "guard_http_request_duration_seconds_count", method="GET", route="/healthz",
                 status="200") == 8
    assert len(list(prom.glob("*.db"))) >= 3  # one file set per process
    assert "guard_audit_chain_length" in out
