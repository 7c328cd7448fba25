"""Authorization matrix: every route x every principal, generated from the URL map.

A route without an entry in EXAMPLES fails `test_every_route_has_an_example`, so a new route
cannot ship without its row in the matrix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from guard.audit.models import AuditEvent
from guard.auth.models import ApiKey
from guard.auth.service import create_key, revoke_key
from guard.db import transaction
from guard.policy import ROLE_NAMES
from guard.runtime import Runtime
from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration


@dataclass
class Req:
    """One example request for a route."""

    path: str
    json: Any = None
    owned: bool = False  # the path names an object of the tenant: another tenant gets 404
    ok: set[int] = field(default_factory=lambda: {200, 201})
    other: set[int] | None = None  # what another tenant's permitted key gets, if not the above
    # HTML pages (the console): a form body, whether it carries the page's CSRF token, and
    # whether the request is the sign-in itself (the key is in the form, not a header).
    form: dict[str, str] | None = None
    csrf: bool = False
    sign_in: bool = False


@dataclass
class Env:
    """What an example needs to build its request."""

    rt: Runtime
    tenant: TenantKeys
    cards: int = 0
    client: Any = None

    def fresh_key_id(self) -> str:
        with transaction(self.rt.sessions) as s:
            key, _ = create_key(s, tenant_id=self.tenant.id, roles=["agent"],
                                pepper=self.rt.keyring.current("api_key_pepper").material,
                                clock=self.rt.clock)
        return key.id

    def some_event_id(self) -> str:
        with transaction(self.rt.sessions) as s:
            from guard.audit.service import append
            from guard.context import operator

            ev = append(s, caller=operator(self.tenant.id), action="test.event", outcome="ok",
                        clock=self.rt.clock)
        return ev.id

    def fresh_token(self) -> str:
        """A new card token of the tenant (same test card, a new expiry each time)."""
        from guard.pci.vault import vault_for

        self.cards += 1
        month, year = self.cards % 12 + 1, 2028 + self.cards // 12
        with transaction(self.rt.sessions) as s:
            result = vault_for(self.rt).tokenize(
                s, tenant_id=self.tenant.id, number="4242424242424242", exp_month=month,
                exp_year=year, cvc=None, customer_ref=None,
                policy=self.rt.policies_for(s, self.tenant.id).get("vault"))  # type: ignore[arg-type]
        return result.card.token

    def enrolled(self) -> str:
        """A customer of the tenant with knowledge answers and a phone on file."""
        ref = f"cust-{uuid.uuid4().hex[:10]}"
        r = self.client.put(f"/v1/customers/{ref}/factors", headers=self.tenant.headers("admin"), json={
            "knowledge": [{"question_id": "first_pet", "answer": "Rex"}], "phone": "+14155550123"})
        assert r.status_code in (200, 201), r.get_json()
        return ref

    def verification(self) -> str:
        """A verification started for an enrolled customer (level 0)."""
        r = self.client.post("/v1/verifications", headers=self.tenant.headers("agent"), json={
            "customer_ref": self.enrolled(), "interaction_id": "call-1", "channel": "voice"})
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])

    def checkpointed(self) -> int:
        """Give the tenant a few events and a signed checkpoint; returns the tree size."""
        from guard.audit import proofs, service

        self.some_event_id()
        self.some_event_id()
        with transaction(self.rt.sessions) as s:
            res = service.verify(s, self.tenant.id, clock=self.rt.clock)
            cp = proofs.create_checkpoint(s, self.tenant.id, keyring=self.rt.keyring,
                                          clock=self.rt.clock, verified_through=res.verified_through)
        return cp.tree_size


EXAMPLES: dict[tuple[str, str], Callable[[Env], Req]] = {
    ("GET", "/healthz"): lambda e: Req("/healthz"),
    ("GET", "/readyz"): lambda e: Req("/readyz"),
    ("GET", "/v1/openapi.json"): lambda e: Req("/v1/openapi.json"),
    ("GET", "/metrics"): lambda e: Req("/metrics"),
    ("GET", "/v1/me"): lambda e: Req("/v1/me"),
    ("GET", "/v1/keys"): lambda e: Req("/v1/keys"),
    ("POST", "/v1/keys"): lambda e: Req("/v1/keys", json={"roles": ["agent"]}),
    ("DELETE", "/v1/keys/<key_id>"): lambda e: Req(f"/v1/keys/{e.fresh_key_id()}", owned=True),
    ("GET", "/v1/audit/events"): lambda e: Req("/v1/audit/events?limit=5"),
    ("GET", "/v1/audit/events/<event_id>"):
        lambda e: Req(f"/v1/audit/events/{e.some_event_id()}", owned=True),
    ("GET", "/v1/audit/verify"): lambda e: Req("/v1/audit/verify"),
    ("POST", "/v1/audit/subjects/resolve"):
        lambda e: Req("/v1/audit/subjects/resolve", json={"customer_ref": "cust-1"}),
    ("GET", "/v1/policies/current"): lambda e: Req("/v1/policies/current"),
    ("GET", "/v1/policies/overrides"): lambda e: Req("/v1/policies/overrides"),
    ("PUT", "/v1/policies/overrides"):
        lambda e: Req("/v1/policies/overrides", json={"overrides": {"audit": {"retention_days": 500}}}),
    ("GET", "/v1/audit/checkpoints/latest"):
        lambda e: Req("/v1/audit/checkpoints/latest", owned=True) if e.checkpointed() else Req(""),
    ("POST", "/v1/audit/checkpoints"): lambda e: Req("/v1/audit/checkpoints", other={409, 201}),
    ("GET", "/v1/audit/events/<int:seq>/proof"):
        lambda e: Req(f"/v1/audit/events/1/proof?size={e.checkpointed()}", other={422}),
    ("GET", "/v1/audit/consistency"):
        lambda e: Req(f"/v1/audit/consistency?from=1&to={e.checkpointed()}", other={422}),
    ("GET", "/v1/audit/export"):
        lambda e: Req("/v1/audit/export", other={404}) if e.checkpointed() else Req(""),
    ("GET", "/v1/audit/witnesses"): lambda e: Req("/v1/audit/witnesses"),
    ("PUT", "/v1/audit/witnesses"):
        lambda e: Req("/v1/audit/witnesses", json={"urls": ["https://witness.example/cp"]}),
    ("POST", "/v1/cards"):
        lambda e: Req("/v1/cards", json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2030}),
    ("GET", "/v1/cards/<token>"): lambda e: Req(f"/v1/cards/{e.fresh_token()}", owned=True),
    ("DELETE", "/v1/cards/<token>"): lambda e: Req(f"/v1/cards/{e.fresh_token()}", owned=True),
    ("POST", "/v1/redact"): lambda e: Req("/v1/redact", json={"text": "card 4242 4242 4242 4242"}),
    ("PUT", "/v1/customers/<customer_ref>/factors"):
        lambda e: Req(f"/v1/customers/cust-{uuid.uuid4().hex[:8]}/factors",
                      json={"knowledge": [{"question_id": "q1", "answer": "blue"}]}),
    ("GET", "/v1/customers/<customer_ref>/factors"):
        lambda e: Req(f"/v1/customers/{e.enrolled()}/factors", owned=True),
    # A level-0 verification cannot change a contact: permitted roles pass authorization and
    # meet the identity rule (a 403 whose code is not `forbidden`).
    ("POST", "/v1/customers/<customer_ref>/factors/change"):
        lambda e: Req(f"/v1/customers/{e.enrolled()}/factors/change", ok={403}, other={403}, json={
            "verification_id": e.verification(), "interaction_id": "call-1", "kind": "phone",
            "new_value": "+14155550199"}),
    ("GET", "/v1/customers/<customer_ref>/verification-status"):
        lambda e: Req(f"/v1/customers/{e.enrolled()}/verification-status"),
    ("GET", "/v1/identity/lockouts"): lambda e: Req("/v1/identity/lockouts"),
    ("PUT", "/v1/identity/gateway"):
        lambda e: Req("/v1/identity/gateway", json={"url": "https://gateway.example/otp"}),
    ("POST", "/v1/verifications"): lambda e: Req("/v1/verifications", json={
        "customer_ref": e.enrolled(), "interaction_id": "call-2", "channel": "voice"}),
    ("GET", "/v1/verifications/<verification_id>"):
        lambda e: Req(f"/v1/verifications/{e.verification()}", owned=True),
    ("POST", "/v1/verifications/<verification_id>/kba"):
        lambda e: Req(f"/v1/verifications/{e.verification()}/kba", owned=True,
                      json={"answers": [{"question_id": "first_pet", "answer": "Rex"}]}),
    # Sending a code needs a gateway (or the dev outbox on SQLite): 503 still means authorized.
    ("POST", "/v1/verifications/<verification_id>/otp"):
        lambda e: Req(f"/v1/verifications/{e.verification()}/otp", owned=True, ok={200, 503},
                      json={"channel": "sms"}),
    ("POST", "/v1/verifications/<verification_id>/otp/check"):
        lambda e: Req(f"/v1/verifications/{e.verification()}/otp/check", owned=True,
                      json={"code": "000000"}),
    ("POST", "/v1/verifications/<verification_id>/totp"):
        lambda e: Req(f"/v1/verifications/{e.verification()}/totp", owned=True, json={"code": "000000"}),
    ("POST", "/v1/verifications/<verification_id>/end"):
        lambda e: Req(f"/v1/verifications/{e.verification()}/end", owned=True),
    ("POST", "/v1/calls/check"): lambda e: Req("/v1/calls/check", json={
        "phone": "(415) 555-0100", "purpose": "informational", "method": "manual"}),
    ("POST", "/v1/calls/attempts"): lambda e: Req("/v1/calls/attempts", json={"attempts": [{
        "phone": "+14155550100", "purpose": "informational", "method": "manual",
        "at": "2026-11-23T14:00:00Z"}]}),
    ("POST", "/v1/calls/outcome"): lambda e: Req("/v1/calls/outcome", json={
        "phone": "+14155550100", "outcome": "no_answer", "at": "2026-11-23T14:00:00Z"}),
    ("POST", "/v1/consents"): lambda e: Req("/v1/consents", json={
        "phone": "+14155550100", "kind": "express", "source": "web form 12", "text_shown": "You may call me",
        "channel": "web", "captured_at": "2026-11-01T10:00:00Z"}),
    ("POST", "/v1/consents/revoke"): lambda e: Req("/v1/consents/revoke", json={"phone": "+14155550100"}),
    ("POST", "/v1/dnc"): lambda e: Req("/v1/dnc", json={"phone": "+14155550100"}),
    ("POST", "/v1/relationships"): lambda e: Req("/v1/relationships", json={
        "customer_ref": "cust-1", "phone": "+14155550100", "kind": "purchase", "at": "2026-10-01T10:00:00Z"}),
    ("POST", "/v1/numbers/line-type"):
        lambda e: Req("/v1/numbers/line-type", json={"phone": "+14155550100", "line_type": "landline"}),
    ("POST", "/v1/dnc/subscriptions"): lambda e: Req("/v1/dnc/subscriptions", json={"area_codes": [415]}),
    ("GET", "/v1/dnc/status"): lambda e: Req("/v1/dnc/status"),
    ("POST", "/v1/calls/scrub"): lambda e: Req("/v1/calls/scrub", json={
        "numbers": ["+14155550100", "+14155550101"], "purpose": "informational", "method": "manual"}),
    ("GET", "/v1/policies/<version>"):
        lambda e: Req(f"/v1/policies/{e.rt.policies.base.version}"),
    ("GET", "/console/login"): lambda e: Req("/console/login"),
    ("POST", "/console/login"): lambda e: Req("/console/login", ok={303}, sign_in=True),
    ("GET", "/console/static/console.css"): lambda e: Req("/console/static/console.css"),
    ("POST", "/console/logout"): lambda e: Req("/console/logout", form={}, csrf=True, ok={303}),
    ("GET", "/console/"): lambda e: Req("/console/"),
    ("GET", "/console/events"): lambda e: Req("/console/events?limit=5"),
    ("GET", "/console/events/<event_id>"):
        lambda e: Req(f"/console/events/{e.some_event_id()}", owned=True),
    ("GET", "/console/policies/<version>"):
        lambda e: Req(f"/console/policies/{e.rt.policies.base.version}"),
}


def _routes(app: Flask) -> list[tuple[str, str, Any]]:
    out = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], "guard_spec", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, rule.rule, spec))
    return out


def test_every_route_has_an_example(app: Flask) -> None:
    missing = [(m, r) for m, r, _ in _routes(app) if (m, r) not in EXAMPLES]
    assert not missing, f"routes without an authorization-matrix example: {missing}"
    stale = set(EXAMPLES) - {(m, r) for m, r, _ in _routes(app)}
    assert not stale, f"examples for routes that no longer exist: {stale}"


def _special_key(rt: Runtime, tenant: TenantKeys, role: str, state: str) -> str:
    with transaction(rt.sessions) as s:
        key, token = create_key(s, tenant_id=tenant.id, roles=[role],
                                pepper=rt.keyring.current("api_key_pepper").material, clock=rt.clock)
        if state == "revoked":
            revoke_key(s, key.id, clock=rt.clock)
        else:
            s.execute(update(ApiKey).where(ApiKey.id == key.id)
                      .values(expires_at=rt.clock.now() - timedelta(seconds=1)))
    return token


def _call(client: Any, method: str, req: Req, headers: dict[str, str]) -> Any:
    return client.open(req.path, method=method, json=req.json, headers=headers)


@pytest.mark.parametrize("route", sorted(EXAMPLES, key=lambda k: (k[1], k[0])),
                         ids=lambda k: f"{k[0]} {k[1]}")
def test_authorization_matrix(app: Flask, rt: Runtime, tenant: TenantKeys,
                              other_tenant: TenantKeys, route: tuple[str, str]) -> None:
    method, rule = route
    spec = next(s for m, r, s in _routes(app) if (m, r) == route)
    client = app.test_client()
    env = Env(rt, tenant, client=app.test_client())
    problems: list[str] = []

    def expect(who: str, resp: Any, allowed: set[int], forbidden: bool = False) -> None:
        if resp.status_code not in allowed:
            problems.append(f"{who}: got {resp.status_code}, want {sorted(allowed)}: "
                            f"{resp.get_data(as_text=True)[:200]}")
        elif resp.status_code >= 400:
            html = spec is not None and spec.html
            assert resp.mimetype == ("text/html" if html else "application/problem+json"), who
            # A role refusal says `forbidden`; a permitted role may still meet a business rule.
            if not html and resp.status_code == 403 and (resp.get_json()["code"] == "forbidden") != forbidden:
                problems.append(f"{who}: 403 {resp.get_json()['code']}, role refusal expected: {forbidden}")

    if spec.html:
        _html_matrix(app, rt, tenant, other_tenant, method, spec, env, expect)
        assert not problems, "\n".join(problems)
        return
    if spec.public:
        req = EXAMPLES[route](env)
        expect("no key", _call(client, method, req, {}), req.ok)
        return

    roles = rt.policies.base.roles
    permitted = [r for r in ROLE_NAMES if roles.allows(r, spec.permission)]
    assert permitted, f"no role may call {method} {rule}"
    for role in ROLE_NAMES:
        req = EXAMPLES[route](env)
        allowed = req.ok if role in permitted else {403}
        expect(role, _call(client, method, req, tenant.headers(role)), allowed, role not in permitted)

    req = EXAMPLES[route](env)
    expect("no key", _call(client, method, req, {}), {401})
    expect("garbage key", _call(client, method, req, {"Authorization": "Bearer gk_live_nope"}), {401})
    expect("unknown well-formed key", _call(client, method, req, {
        "Authorization": "Bearer gk_live_" + "A" * 36}), {401})
    for state in ("revoked", "expired"):
        token = _special_key(rt, tenant, permitted[0], state)
        expect(state, _call(client, method, EXAMPLES[route](env),
                            {"Authorization": f"Bearer {token}", "X-Guard-Actor": "x"}), {401})
    req = EXAMPLES[route](env)
    expect("other tenant", _call(client, method, req, other_tenant.headers(permitted[0])),
           req.other if req.other is not None else {404} if req.owned else req.ok)
    assert not problems, "\n".join(problems)


def _html_matrix(app: Flask, rt: Runtime, tenant: TenantKeys, other_tenant: TenantKeys, method: str,
                 spec: Any, env: Env, expect: Callable[[str, Any, set[int]], None]) -> None:
    """Console pages: the credential is a session cookie opened by signing in with a key."""
    from tests.console.helpers import csrf_of, sign_in

    route = (method, next(r.rule for r in app.url_map.iter_rules()
                          if getattr(app.view_functions[r.endpoint], "guard_spec", None) is spec))
    roles = rt.policies.base.roles
    console_roles = [r for r in ROLE_NAMES if roles.allows(r, "console.read")]

    def call(client: Any, req: Req) -> Any:
        form = dict(req.form or {})
        if req.csrf:
            page = client.get("/console/login") if spec.public else client.get("/console/")
            if page.status_code == 200:
                form["csrf"] = csrf_of(page.get_data(as_text=True))
        return client.open(req.path, method=method, data=form if req.form is not None else None)

    def session_for(token: str, t: TenantKeys | None = None) -> Any:
        client = app.test_client()
        assert sign_in(client, token).status_code == 303
        return client

    if spec.public and not EXAMPLES[route](env).sign_in:
        req = EXAMPLES[route](env)
        expect("no session", call(app.test_client(), req), req.ok)
        return
    if spec.public:  # the sign-in itself: only console roles' valid keys open a session
        for role in ROLE_NAMES:
            expect(role, sign_in(app.test_client(), tenant.keys[role]),
                   EXAMPLES[route](env).ok if role in console_roles else {403})
        for who, token in (("garbage key", "gk_live_nope"), ("unknown well-formed key", "gk_live_" + "A" * 36),
                           *((state, _special_key(rt, tenant, console_roles[0], state))
                             for state in ("revoked", "expired"))):
            expect(who, sign_in(app.test_client(), token), {401})
        return

    permitted = [r for r in ROLE_NAMES if roles.allows(r, spec.permission)]
    assert permitted, f"no role may call {route}"
    for role in ROLE_NAMES:
        if role in permitted:
            expect(role, call(session_for(tenant.keys[role]), EXAMPLES[route](env)), EXAMPLES[route](env).ok)
            continue
        # A session whose key no longer holds the permission (roles are re-read per request).
        with transaction(rt.sessions) as s:
            key, token = create_key(s, tenant_id=tenant.id, roles=[permitted[0]],
                                    pepper=rt.keyring.current("api_key_pepper").material, clock=rt.clock)
        client = session_for(token)
        with transaction(rt.sessions) as s:
            s.execute(update(ApiKey).where(ApiKey.id == key.id).values(roles=[role]))
        expect(role, call(client, EXAMPLES[route](env)), {403})
    no_session = {303} if method == "GET" else {401}
    expect("no session", call(app.test_client(), EXAMPLES[route](env)), no_session)
    forged = app.test_client()
    forged.set_cookie("guard_console", "A" * 43, path="/console")
    expect("unknown session", call(forged, EXAMPLES[route](env)), no_session)
    expect("bearer key, no session", app.test_client().open(
        EXAMPLES[route](env).path, method=method, headers=tenant.headers(permitted[0])), no_session)
    for state in ("revoked", "expired"):
        with transaction(rt.sessions) as s:
            key, token = create_key(s, tenant_id=tenant.id, roles=[permitted[0]],
                                    pepper=rt.keyring.current("api_key_pepper").material, clock=rt.clock)
        client = session_for(token)
        with transaction(rt.sessions) as s:
            if state == "revoked":
                revoke_key(s, key.id, clock=rt.clock)
            else:
                s.execute(update(ApiKey).where(ApiKey.id == key.id)
                          .values(expires_at=rt.clock.now() - timedelta(seconds=1)))
        expect(state, call(client, EXAMPLES[route](env)), no_session)
    req = EXAMPLES[route](env)
    expect("other tenant", call(session_for(other_tenant.keys[permitted[0]]), req),
           req.other if req.other is not None else {404} if req.owned else req.ok)


def test_forbidden_and_rejected_keys_are_audited(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    client = app.test_client()
    assert client.get("/v1/keys", headers=tenant.headers("agent")).status_code == 403
    token = _special_key(rt, tenant, "admin", "revoked")
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with transaction(rt.sessions) as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == tenant.id)
                           .order_by(AuditEvent.seq)).scalars().all()
    forbidden = [e for e in events if e.action == "auth.key.list" and e.outcome == "deny"]
    assert len(forbidden) == 1
    assert forbidden[0].reasons == ["role_not_permitted"]
    assert forbidden[0].key_id == tenant.key_ids["agent"] and forbidden[0].actor == "agent-007"
    assert forbidden[0].policy_version == rt.policies.base.version
    rejected = [e for e in events if e.action == "auth.key.rejected"]
    assert [e.reasons for e in rejected] == [["key_revoked"]]
