"""The auditor console without a browser: sessions, cookies, CSRF, CSP, pages, isolation, secrets."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text, update

from guard.audit.models import AuditEvent
from guard.auth.models import ApiKey
from guard.auth.service import revoke_key
from guard.clock import FixedClock
from guard.console import panels
from guard.console.models import ConsoleSession
from guard.console.views import CSP
from guard.db import transaction
from guard.runtime import Runtime
from tests.conftest import TenantKeys
from tests.console.helpers import add_event, checkpoint, csrf_of, sign_in

pytestmark = pytest.mark.integration


def _json(value: Any) -> Any:
    """An audit column's value whether it reads back as canonical JSON text or parsed."""
    return json.loads(value) if isinstance(value, str) else value


def _set_cookies(resp: Any) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in resp.headers.getlist("Set-Cookie")}


def _events(rt: Runtime, tenant_id: str, prefix: str = "console.") -> list[AuditEvent]:
    with transaction(rt.sessions) as s:
        return list(s.execute(select(AuditEvent).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.action.startswith(prefix))
            .order_by(AuditEvent.seq)).scalars())


def _sessions(rt: Runtime, tenant_id: str) -> list[ConsoleSession]:
    with transaction(rt.sessions) as s:
        return list(s.execute(select(ConsoleSession).where(ConsoleSession.tenant_id == tenant_id)
                              .order_by(ConsoleSession.created_at)).scalars())


# ----------------------------------------------------------------------------- sign-in, cookies


def test_no_session_redirects_to_sign_in(client: Any) -> None:
    for path in ("/console/", "/console/events", "/console/events/evt_x", "/console/policies/x"):
        resp = client.get(path)
        assert resp.status_code == 303, path
        assert resp.headers["Location"].startswith("/console/login")
    resp = client.post("/console/logout")
    assert resp.status_code == 401 and resp.mimetype == "text/html"


def test_sign_in_sets_a_strict_session_cookie_and_stores_only_its_hash(
        app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    client = app.test_client()
    resp = sign_in(client, tenant.keys["auditor"])
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/"
    cookie = _set_cookies(resp)["guard_console"]
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/console" in attrs
    assert "secure" not in attrs  # plain HTTP here; see the HTTPS test
    assert "max-age=28800" in attrs  # 8 h, policies/console.yaml
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    rows = _sessions(rt, tenant.id)
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert rows[0].key_id == tenant.key_ids["auditor"] and rows[0].actor == "Ada Auditor"
    with transaction(rt.sessions) as s:
        dump = json.dumps([list(r) for r in s.execute(text("SELECT * FROM console_sessions"))], default=str)
    assert token not in dump and tenant.keys["auditor"] not in dump
    page = client.get("/console/")
    assert page.status_code == 200 and "Audit trail status" in page.get_data(as_text=True)
    login = _events(rt, tenant.id, "console.login")
    assert [(e.outcome, e.actor, e.key_id, e.role) for e in login] == [
        ("ok", "Ada Auditor", tenant.key_ids["auditor"], "auditor")]


def test_cookie_is_secure_over_https(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    resp = sign_in(client, tenant.keys["auditor"], base_url="https://guard.example")
    cookies = _set_cookies(resp)
    assert "secure" in [a.strip().lower() for a in cookies["guard_console"].split(";")]
    assert "Secure" in client.get("/console/login", base_url="https://guard.example").headers["Set-Cookie"]


def test_cookie_is_secure_behind_a_trusted_tls_proxy(settings: Any, clock: FixedClock,
                                                     tenant: TenantKeys) -> None:
    from guard import create_app

    proxy = {"X-Forwarded-Proto": "https"}
    app = create_app(settings.model_copy(update={"trust_forwarded_for": True}), clock=clock)
    try:
        resp = sign_in(app.test_client(), tenant.keys["auditor"], headers=proxy)
        assert "secure" in [a.strip().lower() for a in _set_cookies(resp)["guard_console"].split(";")]
    finally:
        app.extensions["guard"].close()


def test_forwarded_proto_is_ignored_unless_trusted(app: Flask, tenant: TenantKeys) -> None:
    resp = sign_in(app.test_client(), tenant.keys["auditor"], headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in [a.strip().lower() for a in _set_cookies(resp)["guard_console"].split(";")]


@pytest.mark.parametrize("role", ["auditor", "supervisor", "privacy_officer"])
def test_console_roles_may_sign_in(app: Flask, tenant: TenantKeys, role: str) -> None:
    client = app.test_client()
    assert sign_in(client, tenant.keys[role]).status_code == 303
    assert client.get("/console/events").status_code == 200


@pytest.mark.parametrize("role", ["agent", "ai_agent", "dialer", "admin"])
def test_other_roles_are_refused_and_audited(app: Flask, rt: Runtime, tenant: TenantKeys, role: str) -> None:
    client = app.test_client()
    resp = sign_in(client, tenant.keys[role])
    assert resp.status_code == 403 and "may not use the console" in resp.get_data(as_text=True)
    assert "guard_console=" not in resp.headers.get("Set-Cookie", "")
    assert not _sessions(rt, tenant.id)
    denied = _events(rt, tenant.id, "console.login")
    assert [(e.outcome, _json(e.reasons), e.key_id) for e in denied] == [
        ("deny", ["role_not_permitted"], tenant.key_ids[role])]


def test_bad_keys_and_names_are_refused_without_echo(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    bogus = "gk_live_" + "A" * 36
    resp = sign_in(client, bogus)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 401 and "not accepted" in body and bogus not in body
    resp = sign_in(client, "4242424242424242")
    assert resp.status_code == 401 and "4242424242424242" not in resp.get_data(as_text=True)
    resp = sign_in(client, tenant.keys["auditor"], actor="")
    assert resp.status_code == 422 and "Enter your name" in resp.get_data(as_text=True)


def test_revoked_key_cannot_sign_in(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    with transaction(rt.sessions) as s:
        revoke_key(s, tenant.key_ids["auditor"], clock=rt.clock, cache=rt.key_cache)
    resp = sign_in(app.test_client(), tenant.keys["auditor"])
    assert resp.status_code == 401 and "revoked" in resp.get_data(as_text=True)
    assert [_json(e.reasons) for e in _events(rt, tenant.id, "auth.key.rejected")] == [["key_revoked"]]


# ----------------------------------------------------------------------------- CSRF


def test_sign_in_without_a_valid_csrf_token_is_refused(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    form = {"api_key": tenant.keys["auditor"], "actor": "x"}
    assert client.post("/console/login", data=form).status_code == 403  # no token, no cookie
    page = client.get("/console/login")
    token = csrf_of(page.get_data(as_text=True))
    assert client.post("/console/login", data={**form, "csrf": "0" * 64}).status_code == 403
    # A token minted for another browser's cookie does not match this one's.
    other = app.test_client()
    other_token = csrf_of(other.get("/console/login").get_data(as_text=True))
    assert client.post("/console/login", data={**form, "csrf": other_token}).status_code == 403
    # Without the sign-in cookie (what a cross-site form post sends under SameSite=Strict).
    client.delete_cookie("guard_console_login", path="/console")
    resp = client.post("/console/login", data={**form, "csrf": token})
    assert resp.status_code == 403 and "did not come from this site" in resp.get_data(as_text=True)


def test_logout_needs_the_session_csrf_token(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    client = app.test_client()
    sign_in(client, tenant.keys["auditor"])
    assert client.post("/console/logout", data={}).status_code == 403
    assert client.post("/console/logout", data={"csrf": "f" * 64}).status_code == 403
    assert len(_sessions(rt, tenant.id)) == 1  # still signed in
    refused = [e for e in _events(rt, tenant.id, "console.logout") if e.outcome == "deny"]
    assert [_json(e.reasons) for e in refused] == [["csrf_failed"]] * 2
    page = client.get("/console/").get_data(as_text=True)
    resp = client.post("/console/logout", data={"csrf": csrf_of(page)})
    assert resp.status_code == 303 and "ended=signed_out" in resp.headers["Location"]
    assert 'guard_console=;' in resp.headers["Set-Cookie"]
    assert not _sessions(rt, tenant.id)
    assert client.get("/console/").status_code == 303


def test_sign_in_replaces_the_previous_session(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    client = app.test_client()
    sign_in(client, tenant.keys["auditor"])
    first = _sessions(rt, tenant.id)[0].id
    sign_in(client, tenant.keys["supervisor"], actor="Sam")
    rows = _sessions(rt, tenant.id)
    assert len(rows) == 1 and rows[0].id != first and rows[0].key_id == tenant.key_ids["supervisor"]


# ----------------------------------------------------------------------------- CSP and headers


def test_csp_and_framing_headers_on_every_console_response(app: Flask, rt: Runtime,
                                                            tenant: TenantKeys) -> None:
    client = app.test_client()
    responses = [client.get("/console/login"), client.get("/console/"),
                 client.post("/console/login", data={}), client.get("/console/nope"),
                 client.get("/console/static/console.css")]
    responses.append(sign_in(client, tenant.keys["auditor"]))
    ev = add_event(rt, tenant.id)
    for path in ("/console/", "/console/?full=1", "/console/events", "/console/events?from=junk",
                 f"/console/events/{ev}", "/console/events/evt_missing",
                 f"/console/policies/{rt.policies.base.version}", "/console/policies/nope"):
        responses.append(client.get(path))
    statuses = set()
    for resp in responses:
        statuses.add(resp.status_code)
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        body = resp.get_data(as_text=True)
        assert "<script" not in body.lower() and " style=" not in body and "<style" not in body
    assert {200, 303, 403, 404, 422} <= statuses
    assert client.get("/console/").headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP


def test_console_is_not_in_the_openapi_document(client: Any) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert not [p for p in doc["paths"] if p.startswith("/console")]


# ----------------------------------------------------------------------------- session lifetime


def test_idle_session_expires(app: Flask, rt: Runtime, clock: FixedClock, tenant: TenantKeys) -> None:
    client = app.test_client()
    sign_in(client, tenant.keys["auditor"])
    clock.advance(minutes=14, seconds=59)
    assert client.get("/console/").status_code == 200  # activity resets the idle timer
    clock.advance(minutes=14, seconds=59)
    assert client.get("/console/events").status_code == 200
    clock.advance(minutes=15)
    resp = client.get("/console/")
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/login?ended=session_idle"
    assert not _sessions(rt, tenant.id)
    ended = [e for e in _events(rt, tenant.id) if e.outcome == "deny"]
    assert [(e.action, _json(e.reasons)) for e in ended] == [("console.status.read", ["session_idle"])]
    assert "idle too long" in client.get(resp.headers["Location"]).get_data(as_text=True)


def test_session_ends_after_its_maximum_length(app: Flask, rt: Runtime, clock: FixedClock,
                                               tenant: TenantKeys) -> None:
    client = app.test_client()
    sign_in(client, tenant.keys["auditor"])
    for _ in range(47):  # active every 10 minutes for 7 h 50 min
        clock.advance(minutes=10)
        assert client.get("/console/events?limit=1").status_code == 200
    clock.advance(minutes=10)  # 8 h after sign-in
    resp = client.get("/console/events?limit=1")
    assert resp.headers["Location"] == "/console/login?ended=session_expired"
    assert not _sessions(rt, tenant.id)


def test_revoked_key_ends_its_sessions_at_the_next_request(app: Flask, rt: Runtime,
                                                           tenant: TenantKeys) -> None:
    a, b = app.test_client(), app.test_client()
    sign_in(a, tenant.keys["auditor"])
    sign_in(b, tenant.keys["auditor"], actor="Bea")
    sign_in(app.test_client(), tenant.keys["supervisor"], actor="Sam")
    assert a.get("/console/").status_code == 200
    with transaction(rt.sessions) as s:
        # Straight in the database, as another process would: no cache eviction here.
        s.execute(update(ApiKey).where(ApiKey.id == tenant.key_ids["auditor"])
                  .values(revoked_at=rt.clock.now()))
    resp = a.get("/console/events")
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/login?ended=key_revoked"
    assert [r.key_id for r in _sessions(rt, tenant.id)] == [tenant.key_ids["supervisor"]]  # b's is gone too
    assert b.get("/console/").status_code == 303
    denied = [e for e in _events(rt, tenant.id) if e.outcome == "deny"]
    assert _json(denied[0].reasons) == ["key_revoked"] and denied[0].action == "console.events.read"


def test_expired_key_ends_its_session(app: Flask, rt: Runtime, clock: FixedClock, tenant: TenantKeys) -> None:
    client = app.test_client()
    sign_in(client, tenant.keys["auditor"])
    with transaction(rt.sessions) as s:
        s.execute(update(ApiKey).where(ApiKey.id == tenant.key_ids["auditor"])
                  .values(expires_at=clock.now()))
    assert client.get("/console/").headers["Location"] == "/console/login?ended=key_expired"


def test_role_removed_from_the_key_is_refused_at_once(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    client = app.test_client()
    sign_in(client, tenant.keys["auditor"])
    with transaction(rt.sessions) as s:
        s.execute(update(ApiKey).where(ApiKey.id == tenant.key_ids["auditor"]).values(roles=["agent"]))
    resp = client.get("/console/")
    assert resp.status_code == 403 and resp.mimetype == "text/html"


# ----------------------------------------------------------------------------- pages


def _signed_in(app: Flask, tenant: TenantKeys, role: str = "auditor") -> Any:
    client = app.test_client()
    assert sign_in(client, tenant.keys[role]).status_code == 303
    return client


def test_event_of_another_tenant_is_404(app: Flask, rt: Runtime, tenant: TenantKeys,
                                        other_tenant: TenantKeys) -> None:
    theirs = add_event(rt, other_tenant.id, details={"note": "other tenant's"})
    client = _signed_in(app, tenant)
    resp = client.get(f"/console/events/{theirs}")
    assert resp.status_code == 404 and "other tenant's" not in resp.get_data(as_text=True)
    assert theirs not in client.get("/console/events?limit=1000").get_data(as_text=True)
    assert client.get(f"/console/events?key_id={other_tenant.key_ids['auditor']}").status_code == 200


def test_search_filters_and_pagination(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    for i in range(5):
        add_event(rt, tenant.id, action="tcpa.call.check", outcome="deny", reasons=[f"why-{i}"])
    add_event(rt, tenant.id, action="pci.card.tokenize", outcome="ok")
    client = _signed_in(app, tenant)
    page = client.get("/console/events?action=tcpa.*&outcome=deny&limit=2").get_data(as_text=True)
    assert page.count('class="event-link"') == 2 and "why-0" in page and "why-2" not in page
    assert "pci.card.tokenize" not in page
    nxt = page.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    page2 = client.get(nxt).get_data(as_text=True)
    assert "why-2" in page2 and "why-3" in page2 and "why-0" not in page2
    bad = client.get("/console/events?from=yesterday&outcome=maybe")
    body = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "from" in body and "outcome" in body
    assert client.get("/console/events?cursor=abc").status_code == 422
    reads = [e for e in _events(rt, tenant.id, "console.events.read") if e.outcome == "ok"]
    assert _json(reads[0].details)["filters"] == {"action": "tcpa.*", "outcome": "deny"}


def test_event_page_shows_decision_reasons_policy_and_proof(app: Flask, rt: Runtime,
                                                            tenant: TenantKeys) -> None:
    ev = add_event(rt, tenant.id, action="tcpa.call.check", outcome="deny",
                   reasons=["outside_calling_hours"])
    client = _signed_in(app, tenant)
    body = client.get(f"/console/events/{ev}").get_data(as_text=True)
    assert "outside_calling_hours" in body and "tcpa.call.check" in body
    assert "Not yet checkpointed" in body
    version = rt.policies.base.version
    assert f'href="/console/policies/{version}"' in body
    policy = client.get(f"/console/policies/{version}").get_data(as_text=True)
    assert "retention_days" in policy and "idle_minutes" in policy
    size = checkpoint(rt, tenant.id)
    body = client.get(f"/console/events/{ev}").get_data(as_text=True)
    assert f"Included in checkpoint {size}" in body and "PROOF FAILS" not in body
    later = add_event(rt, tenant.id)
    assert "Not yet checkpointed" in client.get(f"/console/events/{later}").get_data(as_text=True)


def test_tampered_event_fails_its_proof_and_breaks_the_chain(app: Flask, rt: Runtime,
                                                            tenant: TenantKeys) -> None:
    ids = [add_event(rt, tenant.id, details={"n": i}) for i in range(4)]
    checkpoint(rt, tenant.id)
    client = _signed_in(app, tenant)
    assert "Verified up to seq" in client.get("/console/").get_data(as_text=True)
    with transaction(rt.sessions) as s:
        seq = s.execute(select(AuditEvent.seq).where(AuditEvent.id == ids[1])).scalar_one()
        s.execute(update(AuditEvent).where(AuditEvent.id == ids[1]).values(details='{"n":99}'))
    body = client.get(f"/console/events/{ids[1]}").get_data(as_text=True)
    assert "PROOF FAILS" in body and "no longer matches its hash" in body
    assert "PROOF FAILS" not in client.get(f"/console/events/{ids[2]}").get_data(as_text=True)
    status = client.get("/console/?full=1").get_data(as_text=True)
    assert f"CHAIN BROKEN at seq {seq}" in status
    audited = [_json(e.details) for e in _events(rt, tenant.id, "console.status.read")]
    assert audited[-1]["ok"] is False and audited[-1]["first_bad_seq"] == seq


def test_newly_tampered_tail_is_flagged_without_full_verification(app: Flask, rt: Runtime,
                                                                  tenant: TenantKeys) -> None:
    client = _signed_in(app, tenant)
    client.get("/console/")  # watermark at the head
    ev = add_event(rt, tenant.id, details={"n": 1})
    add_event(rt, tenant.id)
    with transaction(rt.sessions) as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == ev).values(outcome="allow"))
        seq = s.execute(select(AuditEvent.seq).where(AuditEvent.id == ev)).scalar_one()
    assert f"CHAIN BROKEN at seq {seq}" in client.get("/console/").get_data(as_text=True)


def test_no_card_number_or_secret_appears_in_any_page(app: Flask, rt: Runtime, tenant: TenantKeys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pan, cvc, otp = "4242424242424242", "737", "914203"
    ev = add_event(rt, tenant.id, action="pci.card.tokenize", outcome="deny", reasons=["card_declined"],
                   details={"note": f"caller read 4242 4242 4242 4242 then {pan}", "pan": pan,
                            "cvc": cvc, "otp": otp, "last4": "4242"})
    # A row whose details reach the page unscrubbed (e.g. from a buggy writer): the page masks
    # them anyway. Injected at read time so no card number is ever stored in the test database.
    raw = add_event(rt, tenant.id, details={"x": 1})
    from guard.audit import service as audit_service

    real = audit_service.event_to_api

    def leaky(row: Any) -> dict[str, Any]:
        data = real(row)
        if data["id"] == raw:
            data["details"] = {"note": f"pan {pan}", "card_number": pan}
        return data

    monkeypatch.setattr(audit_service, "event_to_api", leaky)
    client = app.test_client()
    login = sign_in(client, tenant.keys["auditor"])
    session_token = _set_cookies(login)["guard_console"].split(";")[0].split("=", 1)[1]
    pages = [client.get(p) for p in ("/console/", "/console/events?limit=1000", f"/console/events/{ev}",
                                     f"/console/events/{raw}",
                                     f"/console/policies/{rt.policies.base.version}")]
    for resp in pages:
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200
        for secret in (pan, "4242 4242 4242 4242", f'"{cvc}"', f'"{otp}"', otp + " ", tenant.keys["auditor"], session_token):
            assert secret not in body, (resp.request.path, secret)
    # Masked, not dropped (the scrubber writes [redacted], or the PCI redactor's [CARD ****4242]).
    for page in (pages[2], pages[3]):
        assert re.search(r"\[redacted\]|\[CARD \*+4242\]", page.get_data(as_text=True))
    with transaction(rt.sessions) as s:
        dump = json.dumps([list(r) for r in s.execute(text(
            "SELECT * FROM audit_events WHERE tenant_id = :t"), {"t": tenant.id})], default=str)
    assert session_token not in dump and tenant.keys["auditor"] not in dump
    assert pan not in dump and "4242 4242 4242 4242" not in dump and f'"{otp}"' not in dump


def test_every_page_view_is_audited(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    ev = add_event(rt, tenant.id)
    client = _signed_in(app, tenant, "supervisor")
    client.get("/console/")
    client.get("/console/events?outcome=ok")
    client.get(f"/console/events/{ev}")
    client.get(f"/console/policies/{rt.policies.base.version}")
    got = [(e.action, e.outcome, e.actor, e.role, e.key_id) for e in _events(rt, tenant.id)]
    key = tenant.key_ids["supervisor"]
    assert got == [(a, "ok", "Ada Auditor", "supervisor", key) for a in (
        "console.login", "console.status.read", "console.events.read", "console.event.read",
        "console.policy.read")]
    assert all(e.policy_version == rt.policies.base.version for e in _events(rt, tenant.id))


def test_denied_decisions_chart(app: Flask, rt: Runtime, clock: FixedClock, tenant: TenantKeys) -> None:
    client = _signed_in(app, tenant)
    assert 'id="no-denials"' in client.get("/console/").get_data(as_text=True)
    add_event(rt, tenant.id, outcome="deny", reasons=["outside_calling_hours"])
    add_event(rt, tenant.id, outcome="deny", reasons=["outside_calling_hours", "dnc_listed"])
    clock.advance(days=1)
    add_event(rt, tenant.id, outcome="deny", reasons=["dnc_listed"])
    add_event(rt, tenant.id, outcome="allow")
    client = _signed_in(app, tenant)
    body = client.get("/console/").get_data(as_text=True)
    svg = body.split('<svg xmlns="http://www.w3.org/2000/svg"', 1)[1].split("</svg>", 1)[0]
    titles = sorted(t.split("</title>")[0] for t in svg.split("<rect")[1:] for t in [t.split("<title>")[1]])
    assert titles == ["2026-11-23: dnc_listed x 1", "2026-11-23: outside_calling_hours x 2",
                      "2026-11-24: dnc_listed x 1"]
    assert "style=" not in svg


# ----------------------------------------------------------------------------- panels


def test_panels_render_only_when_registered(app: Flask, tenant: TenantKeys) -> None:
    client = _signed_in(app, tenant)
    # Only the panels domains registered (today: outbound's DNC freshness) are on the page.
    before = client.get("/console/").get_data(as_text=True)
    assert 'id="panel-dnc_freshness"' in before and 'id="panel-test_fresh"' not in before

    def fresh(inp: panels.PanelInput) -> panels.PanelView:
        return panels.PanelView("warn", "2 due this week", rows=[("tenant", inp.tenant_id)])

    def broken(inp: panels.PanelInput) -> panels.PanelView:
        inp.session.execute(text("SELECT * FROM no_such_table"))
        raise AssertionError("unreachable")

    panels.register_panel("test_fresh", "Test panel", fresh)
    panels.register_panel("test_broken", "Broken panel", broken)
    try:
        resp = client.get("/console/")
        body = resp.get_data(as_text=True)
    finally:
        panels.unregister_panel("test_fresh")
        panels.unregister_panel("test_broken")
    assert resp.status_code == 200
    assert 'id="panel-test_fresh"' in body and "2 due this week" in body and tenant.id in body
    assert 'id="panel-test_broken"' in body and "could not be computed" in body
    assert "Verified up to seq" in body  # the page's transaction survived the broken panel


def test_chart_axis_uses_whole_numbers() -> None:
    from datetime import date

    from guard.console import chart
    from guard.console.service import DeniedSeries

    assert chart._axis(0) == (1, 1) and chart._axis(3) == (3, 1) and chart._axis(7) == (8, 2)
    assert chart._axis(23) == (25, 5) and chart._axis(1234) == (1500, 500)
    days = [date(2026, 11, d) for d in (22, 23)]
    reasons = {f"r{i}": {days[1]: i + 1} for i in range(10)}  # more reasons than colours
    built = chart.build(DeniedSeries(days, reasons))
    assert built.total == 55 and len(built.legend) == len(chart.PALETTE)
    assert built.legend[0][1] == "r9" and built.legend[-1][1] == "other (3 reasons)"
    assert chart._axis(55) == (60, 20) and [t[1].text for t in built.y_ticks] == ["0", "20", "40", "60"]
    assert sum(r.height for r in built.rects) == pytest.approx((built.plot_bottom - chart.TOP) * 55 / 60, abs=1)


def test_event_content_is_escaped(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    ev = add_event(rt, tenant.id, action="x.<script>alert(1)</script>", reasons=['"><img src=x>'],
                   details={"note": "<script>alert(2)</script>"})
    client = _signed_in(app, tenant)
    for path in (f"/console/events/{ev}", "/console/events"):
        body = client.get(path).get_data(as_text=True)
        assert "<script>" not in body and "<img src=x>" not in body
        assert "&lt;script&gt;" in body
