"""guard.client.GuardClient against the real app in-process, and its retries against fake servers."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask import Flask

from guard.auth.factors import totp_code
from guard.auth.verify_service import IdentityRuntime
from guard.client import (
    ROUTES,
    ForbiddenError,
    GuardClient,
    GuardConnectionError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    ValidationError,
)
from guard.clock import FixedClock
from tests.conftest import TenantKeys
from tests.identity.identity_support import (  # noqa: F401 - `ident` is a fixture used below
    ANSWERS,
    EMAIL,
    PHONE,
    PHONE2,
    TOTP_SECRET,
    ident,
)

PAN = "4242424242424242"
HTTP_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}


class Recording(httpx.BaseTransport):
    """Forwards to the app in-process and remembers each (method, path) sent."""

    def __init__(self, app: Flask) -> None:
        self.inner = httpx.WSGITransport(app=app)
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        return self.inner.handle_request(request)


def app_routes(app: Flask) -> set[tuple[str, str]]:
    """(method, rule) of every route the app serves."""
    return {(m, r.rule) for r in app.url_map.iter_rules() if r.endpoint != "static"
            for m in (r.methods or set()) & HTTP_METHODS}


def rules_hit(app: Flask, seen: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The app's (method, rule) pairs that the recorded requests reached."""
    adapter = app.url_map.bind("localhost")
    by_endpoint: dict[tuple[str, str], str] = {}
    for r in app.url_map.iter_rules():
        for m in r.methods or set():
            by_endpoint[(r.endpoint, m)] = r.rule
    out = set()
    for method, path in seen:
        endpoint, _ = adapter.match(path, method=method)
        out.add((method, by_endpoint[(endpoint, method)]))
    return out


@pytest.fixture
def rec(app: Flask) -> Recording:
    """A recording in-process transport."""
    return Recording(app)


@pytest.fixture
def make(tenant: TenantKeys, rec: Recording) -> Iterator[Callable[..., GuardClient]]:
    """Clients of the test tenant by role, all over the recording transport."""
    made: list[GuardClient] = []

    def build(role: str, actor: str | None = "agent-007", **kw: Any) -> GuardClient:
        gc = GuardClient("http://guard.test", tenant.keys[role], actor=actor, transport=rec,
                         sleep=lambda s: pytest.fail(f"slept {s}s against the real app"), **kw)
        made.append(gc)
        return gc

    yield build
    for gc in made:
        gc.close()


def test_client_declares_every_route(app: Flask) -> None:
    """The client's declared routes are exactly the app's routes (a new route fails here)."""
    served = app_routes(app)
    assert {r for r in served if r[1].startswith("/v1/")} <= ROUTES
    assert served >= ROUTES, ROUTES - served


def test_every_route_through_the_client(app: Flask, make: Callable[..., GuardClient], rec: Recording,
                                        tenant: TenantKeys, ident: IdentityRuntime,  # noqa: F811
                                        clock: FixedClock) -> None:
    """Each method works against the real app, and together they reach every /v1 route."""
    admin, agent, auditor = make("admin"), make("agent"), make("auditor")
    supervisor, dialer = make("supervisor"), make("dialer")
    now = clock.now()

    assert admin.health()["status"] and admin.ready()["status"]
    assert admin.openapi()["openapi"].startswith("3.1")
    assert "guard_" in auditor.metrics()

    me = agent.me()
    assert me.tenant_id == tenant.id and me.roles == ["agent"] and me.actor == "agent-007"
    created = admin.create_key(roles=["agent"], label="tool", environment="test")
    assert created.key and created.id in {k.id for k in admin.list_keys().keys}
    assert admin.revoke_key(created.id).revoked_at is not None
    with pytest.raises(UnauthorizedError):
        GuardClient("http://guard.test", created.key, transport=rec).me()

    # Identity: enroll, verify by every method, change a contact, supervise, end.
    factors = admin.put_factors("cust-1", knowledge=ANSWERS, phone=PHONE, email=EMAIL,
                                totp_secret=TOTP_SECRET, caller_id_numbers=[PHONE2])
    assert sorted(factors.knowledge_questions) == sorted(ANSWERS) and factors.totp
    assert admin.get_factors("cust-1").customer_ref == "cust-1"
    v = agent.start_verification(customer_ref="cust-1", interaction_id="call-1", channel="voice")
    assert agent.get_verification(v.id).status == "active"
    assert agent.check_kba(v.id, answers=ANSWERS).passed
    sent = agent.send_otp(v.id, channel="sms")
    assert sent.verification_id == v.id and ident.outbox is not None
    code = [m for m in ident.outbox.messages() if m["purpose"] == "otp"][-1]["text"].split("code is ")[1][:6]
    assert agent.check_otp(v.id, code=code).passed
    totp = agent.check_totp(v.id, code=totp_code(base64.b32decode(TOTP_SECRET), at=now.timestamp()))
    assert totp.method == "totp"
    changed = agent.change_factor("cust-1", verification_id=v.id, interaction_id="call-1",
                                  kind="email", new_value="bob.jones@example.com")
    assert changed.kind == "email" and changed.factors.email != EMAIL
    assert supervisor.customer_verification_status("cust-1").locked is False
    assert supervisor.list_lockouts().lockouts == []
    assert agent.end_verification(v.id).status == "ended"
    gw = admin.put_gateway(url="https://gateway.example.com/hook")
    assert gw.signing_secret and gw.url.endswith("/hook")

    # Cards and redaction.
    card = agent.tokenize_card(number=PAN, exp_month=12, exp_year=now.year + 2, cvc="123",
                               customer_ref="cust-1")
    assert card.last4 == "4242" and PAN not in card.model_dump_json()
    again = agent.tokenize_card(number=PAN, exp_month=12, exp_year=now.year + 2)
    assert again.token == card.token and again.already_on_file
    assert agent.get_card(card.token).token == card.token
    assert supervisor.delete_card(card.token).deleted
    red = agent.redact(text=f"my card is {PAN} thanks")
    assert PAN not in red.text and [f.kind for f in red.findings] == ["pan"]

    # Outbound calls.
    phone = "+12125550147"
    assert supervisor.subscribe_dnc(area_codes=[212, 415]).area_codes == [212, 415]
    assert isinstance(supervisor.dnc_status().internal_count, int)
    decision = dialer.check_call(phone=phone, purpose="informational", method="manual",
                                 state="NY", zip="10001")
    assert decision.decision in ("allow", "deny") and decision.audit_event
    consent = agent.record_consent(phone=phone, kind="express", source="web form 7",
                                   text_shown="You may call me.", channel="web",
                                   captured_at=now - timedelta(days=1), customer_ref="cust-1")
    assert consent.kind == "express"
    assert agent.record_relationship(customer_ref="cust-1", phone=phone, kind="purchase",
                                     at=now - timedelta(days=3)).id
    assert agent.set_line_type(phone=phone, line_type="landline").audit_event
    assert dialer.record_attempts(attempts=[{"phone": phone, "purpose": "informational",
                                             "method": "manual", "at": now - timedelta(hours=1)}]).count == 1
    assert dialer.record_outcome(phone=phone, outcome="no_answer", at=now - timedelta(minutes=59)).id
    assert agent.revoke_consent(phone=phone).count == 1
    assert agent.add_dnc(phone="+14155550100", source="stop_reply").audit_event
    lines = list(dialer.scrub_calls(numbers=[phone, "+14155550100"], purpose="telemarketing",
                                    method="manual"))
    assert len(lines) == 3 and json.loads(lines[-1])["summary"]["count"] == 2
    csv_lines = list(dialer.scrub_calls(numbers=[phone], purpose="informational", method="manual", csv=True))
    assert csv_lines[0].startswith("index,") and csv_lines[-1].startswith("# summary")

    # Policies.
    current = admin.current_policy()
    assert admin.get_policy_version(current.version).version == current.version
    assert admin.get_overrides().effective_version == current.version
    assert admin.put_overrides(overrides={}).effective_version == current.version

    # Audit: search, proofs, export, witnesses.
    page = auditor.list_events(action="pci.card.*", limit=5)
    assert page.events and all(e.action and e.action.startswith("pci.card.") for e in page.events)
    assert auditor.get_event(page.events[0].id).id == page.events[0].id
    assert len(list(auditor.iter_events(action="pci.card.tokenize", limit=1))) == 2
    assert auditor.verify_audit().ok
    subject = auditor.resolve_subject(customer_ref="cust-1").subject
    assert subject and auditor.list_events(subject=subject).events
    cp = auditor.create_checkpoint()
    assert auditor.latest_checkpoint().id == cp.id
    proof = auditor.inclusion_proof(page.events[0].seq)
    assert proof.tree_size == cp.tree_size
    cons = auditor.consistency_proof(from_=1, to=cp.tree_size)
    assert cons.to_root == cp.root_hash
    assert admin.put_witnesses(urls=["https://witness.example.com/cp"]).urls == ["https://witness.example.com/cp"]
    assert auditor.get_witnesses().urls == ["https://witness.example.com/cp"]
    assert admin.put_witnesses(urls=[]).urls == []
    exported = list(auditor.export_audit(format="jsonl"))
    assert len(exported) > 2 and all(json.loads(line) for line in exported)

    missing = {r for r in app_routes(app) if r[1].startswith("/v1/")} - rules_hit(app, rec.seen)
    assert not missing, f"routes no client method called: {sorted(missing)}"


def test_typed_errors(make: Callable[..., GuardClient], app: Flask) -> None:
    """401, 403, 404 and 422 problem+json become their exception types with the body's fields."""
    bad = GuardClient("http://guard.test", "gk_test_nope", transport=httpx.WSGITransport(app=app))
    with pytest.raises(UnauthorizedError) as e401:
        bad.me()
    assert e401.value.status == 401 and e401.value.code == "unauthorized" and e401.value.request_id
    with pytest.raises(ForbiddenError) as e403:
        make("agent").list_events()
    assert e403.value.code == "forbidden" and e403.value.status == 403
    with pytest.raises(NotFoundError) as e404:
        make("auditor").get_event("evt_doesnotexist")
    assert e404.value.status == 404 and e404.value.title
    with pytest.raises(ValidationError) as e422:
        make("agent").check_call(phone="+12125550147", purpose="debt_collection", method="manual")
    assert e422.value.code == "validation_failed" and e422.value.errors
    assert "debt_ref" in str(e422.value)


def test_no_card_data_in_errors_or_logs(make: Callable[..., GuardClient],
                                        caplog: pytest.LogCaptureFixture) -> None:
    """A tokenize refused for validation names the field, never the PAN or CVC, anywhere."""
    agent = make("agent")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValidationError) as bad_month:
        agent.tokenize_card(number=PAN, exp_month=13, exp_year=2030, cvc="987")
    with pytest.raises(ValidationError) as in_ref:
        agent.tokenize_card(number=PAN, exp_month=1, exp_year=2030, customer_ref=f"card {PAN}")
    for err in (bad_month.value, in_ref.value):
        text = " ".join([str(err), repr(err), json.dumps(err.body), json.dumps(err.errors)])
        assert PAN not in text and "987" not in text
    assert any("exp_month" in json.dumps(e["loc"]) for e in bad_month.value.errors)
    assert any("customer_ref" in json.dumps(e["loc"]) for e in in_ref.value.errors)
    assert PAN not in caplog.text and "987" not in caplog.text


def test_client_scrubs_secrets_a_server_echoes() -> None:
    """Even a server that echoed input could not put the PAN into the exception message."""
    def echo(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(422, json={"code": "validation_failed", "title": "bad",
                                         "detail": f"number {body['number']} cvc {body['cvc']}",
                                         "errors": [{"loc": ["body", "number"], "input": body["number"]}]})

    gc = GuardClient("http://x", "k", transport=httpx.MockTransport(echo))
    with pytest.raises(ValidationError) as err:
        gc.tokenize_card(number="4242 4242 4242 4242", exp_month=1, exp_year=2030, cvc="987")
    text = str(err.value) + json.dumps(err.value.body) + json.dumps(err.value.errors)
    assert "4242 4242 4242 4242" not in text and "987" not in text and "[redacted]" in text


# ----------------------------------------------------------------------------- retries


WHOAMI = {"tenant_id": "ten_1", "tenant_name": "t", "key_id": "key_1", "roles": ["agent"],
          "actor": None, "policy_version": "v1"}
DECISION = {"decision": "allow", "reasons": [], "phone_e164": "+12125550147",
            "local_window": {"timezones": ["America/New_York"], "opens_at": None, "closes_at": None},
            "next_allowed_at": None, "policy_version": "v1", "registry_versions": {},
            "attempt_id": None, "audit_event": "evt_1"}


class Script:
    """A fake server answering from a script of (status, headers, body) or exceptions."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = answer
        return httpx.Response(status, headers=headers, json=body)

    def client(self, **kw: Any) -> GuardClient:
        return GuardClient("http://guard.test", "k", transport=httpx.MockTransport(self),
                           sleep=self.sleeps.append, **kw)


PROBLEM_503 = (503, {}, {"code": "unavailable", "title": "Service unavailable", "status": 503})


def test_get_retried_after_503() -> None:
    """A GET that meets 503 is sent again after the backoff, and then succeeds."""
    s = Script(PROBLEM_503, (200, {}, WHOAMI))
    assert s.client().me().key_id == "key_1"
    assert len(s.requests) == 2 and s.sleeps == [0.25]


def test_post_without_idempotency_key_not_retried() -> None:
    """A POST without an Idempotency-Key is sent once: its 503 is the caller's to handle."""
    s = Script(PROBLEM_503, (200, {}, DECISION))
    with pytest.raises(ServerError) as err:
        s.client().check_call(phone="+12125550147", purpose="informational", method="manual")
    assert err.value.status == 503 and len(s.requests) == 1 and s.sleeps == []


def test_post_with_idempotency_key_retried() -> None:
    """A POST given an Idempotency-Key is retried with the same key."""
    s = Script((502, {}, {}), (200, {}, DECISION))
    out = s.client().check_call(phone="+12125550147", purpose="informational", method="manual",
                                idempotency_key="idem-1")
    assert out.decision == "allow" and len(s.requests) == 2
    assert [r.headers["Idempotency-Key"] for r in s.requests] == ["idem-1", "idem-1"]


def test_429_retry_after_honoured_and_capped() -> None:
    """429's Retry-After sets the wait (capped by max_retry_after); other waits back off."""
    s = Script((429, {"Retry-After": "7"}, {"code": "rate_limited"}),
               (429, {"Retry-After": "3600"}, {"code": "rate_limited"}),
               (504, {}, {}), (200, {}, WHOAMI))
    assert s.client(max_retry_after=30).me().tenant_id == "ten_1"
    assert s.sleeps == [7.0, 30.0, 1.0]


def test_429_on_plain_post_raises_with_retry_after() -> None:
    """A 429 on a non-retried call surfaces as RateLimitedError carrying retry_after."""
    s = Script((429, {"Retry-After": "12"}, {"code": "rate_limited", "title": "Too many attempts"}))
    with pytest.raises(RateLimitedError) as err:
        s.client().start_verification(customer_ref="c", interaction_id="i", channel="voice")
    assert err.value.retry_after == 12.0 and s.sleeps == []


def test_retries_bounded_and_connection_errors() -> None:
    """Backoff doubles up to the cap; connection errors are retried; then the error surfaces."""
    s = Script(*[PROBLEM_503] * 4)
    with pytest.raises(ServerError):
        s.client(retries=3, backoff=1.0, max_backoff=3.0).dnc_status()
    assert len(s.requests) == 4 and s.sleeps == [1.0, 2.0, 3.0]
    c = Script(httpx.ConnectError("refused"), (200, {}, WHOAMI))
    assert c.client().me().key_id == "key_1" and c.sleeps == [0.25]
    d = Script(httpx.ConnectError("refused"))
    with pytest.raises(GuardConnectionError):
        d.client().redact(text="hello")
    assert len(d.requests) == 1


def test_export_streams_lines(make: Callable[..., GuardClient]) -> None:
    """The export arrives as an iterator of lines: a checkpoint header, then one event per line."""
    agent, auditor = make("agent"), make("auditor")
    for month in (1, 2, 3):
        agent.tokenize_card(number=PAN, exp_month=month, exp_year=2031)
    stream = auditor.export_audit()
    assert isinstance(stream, Iterator)
    lines = [json.loads(line) for line in stream]
    events = [x for x in lines if x.get("action") == "pci.card.tokenize"]
    assert len(events) == 3 and len(lines) > len(events)
    assert PAN not in json.dumps(lines)
