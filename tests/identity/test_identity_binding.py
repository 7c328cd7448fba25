"""require_level: its four errors, binding to tenant/customer/interaction, expiry and end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Blueprint, Flask
from sqlalchemy import select

from guard.audit.models import AuditEvent
from guard.auth.factors import ScryptHasher
from guard.auth.verify_service import IdentityContext, LevelCheck, identity_runtime, require_level
from guard.context import Caller
from guard.db import transaction
from guard.errors import GuardError
from guard.runtime import Runtime
from guard.schemas import Request, Response
from guard.web import RequestContext, endpoint
from tests.identity.identity_support import Api

pytestmark = pytest.mark.integration


@contextmanager
def service(rt: Runtime, tenant_id: str) -> Iterator[IdentityContext]:
    """A service context outside any request (as a CLI command or job would build it)."""
    with transaction(rt.sessions) as session:
        yield IdentityContext(session=session, clock=rt.clock, policies=rt.policies_for(session, tenant_id),
                              keyring=rt.keyring, ir=identity_runtime(rt, hasher=ScryptHasher(log2_n=4)),
                              caller=Caller(tenant_id=tenant_id, key_id=None, role="operator", actor="test"))


def check(rt: Runtime, tenant_id: str, vid: str | None, action: str = "disclose_account",
          customer: str = "cust-1", interaction: str = "call-1") -> LevelCheck:
    with service(rt, tenant_id) as ix:
        return require_level(tenant_id=tenant_id, verification_id=vid, customer_ref=customer,
                             interaction_id=interaction, action=action, context=ix)


def code_of(rt: Runtime, tenant_id: str, vid: str | None, **kw: Any) -> str:
    with pytest.raises(GuardError) as err:
        check(rt, tenant_id, vid, **kw)
    return err.value.code


def level2(api: Api, ref: str = "cust-1", interaction: str = "call-1") -> str:
    vid = api.started(ref, interaction)
    assert api.kba(vid).get_json()["passed"]
    assert api.totp(vid).get_json()["passed"]
    return vid


def test_four_error_codes(api: Api, rt: Runtime, tenant: Any, other_tenant: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    assert code_of(rt, tenant.id, None) == "verification_required"
    assert code_of(rt, tenant.id, "ver_doesnotexist") == "verification_required"
    assert code_of(rt, other_tenant.id, vid) == "verification_required"  # another tenant's id
    assert code_of(rt, tenant.id, vid) == "verification_insufficient"  # level 0
    api.kba(vid)
    assert check(rt, tenant.id, vid).level == 1
    assert code_of(rt, tenant.id, vid, action="charge") == "verification_insufficient"
    assert code_of(rt, tenant.id, vid, customer="cust-2") == "verification_mismatch"
    assert code_of(rt, tenant.id, vid, interaction="call-2") == "verification_mismatch"
    api.client.post(f"/v1/verifications/{vid}/end", headers=tenant.headers("agent"))
    assert code_of(rt, tenant.id, vid) == "verification_expired"


def test_action_levels_and_freshness(api: Api, rt: Runtime, tenant: Any, clock: Any) -> None:
    api.enroll("cust-1")
    vid = level2(api)
    for action in ("disclose_account", "charge", "refund", "privacy_request", "change_contact"):
        assert check(rt, tenant.id, vid, action=action).level == 2
    clock.advance(minutes=6)
    # change_contact needs level 2 reached within 5 minutes; a charge does not.
    assert check(rt, tenant.id, vid, action="charge").level == 2
    assert code_of(rt, tenant.id, vid, action="change_contact") == "verification_insufficient"


def test_ccpa_opt_out_needs_no_verification(rt: Runtime, tenant: Any) -> None:
    result = check(rt, tenant.id, None, action="ccpa_opt_out")
    assert result.required_level == 0 and result.verification_id is None


def test_unknown_action_fails_closed(api: Api, rt: Runtime, tenant: Any) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        check(rt, tenant.id, None, action="teleport")


def test_idle_expiry_and_activity(api: Api, rt: Runtime, tenant: Any, clock: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    clock.advance(minutes=10)
    api.kba(vid)  # activity restarts the 15-minute idle timer
    clock.advance(minutes=10)
    assert check(rt, tenant.id, vid).level == 1  # and so does using it
    clock.advance(minutes=14, seconds=59)
    assert api.get(vid).get_json()["status"] == "active"
    clock.advance(seconds=2)
    assert api.get(vid).get_json()["status"] == "expired"
    assert code_of(rt, tenant.id, vid) == "verification_expired"
    r = api.kba(vid)
    assert r.status_code == 403 and r.get_json()["code"] == "verification_expired"


def test_max_lifetime_caps_activity(api: Api, rt: Runtime, tenant: Any, clock: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.kba(vid)
    for _ in range(11):  # active every 10 minutes for 110 minutes
        clock.advance(minutes=10)
        check(rt, tenant.id, vid)
    clock.advance(minutes=10)  # 120 minutes: the lifetime ends however active it was
    assert code_of(rt, tenant.id, vid) == "verification_expired"


def test_end_is_idempotent_and_final(api: Api, tenant: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    for _ in range(2):
        r = api.client.post(f"/v1/verifications/{vid}/end", headers=tenant.headers("agent"))
        assert r.status_code == 200 and r.get_json()["status"] == "ended"
    assert api.kba(vid).get_json()["code"] == "verification_expired"


def test_other_tenant_cannot_see_or_use(api: Api, tenant: Any, other_tenant: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    h = other_tenant.headers("agent")
    assert api.client.get(f"/v1/verifications/{vid}", headers=h).status_code == 404
    r = api.client.post(f"/v1/verifications/{vid}/kba", headers=h,
                        json={"answers": [{"question_id": "first_pet", "answer": "Rex the Dog"}]})
    assert r.status_code == 404
    assert api.client.post(f"/v1/verifications/{vid}/end", headers=h).status_code == 404
    assert api.get(vid).get_json()["status"] == "active"


class PayIn(Request):
    verification_id: str | None = None
    customer_ref: str
    interaction_id: str


class PayOut(Response):
    level: int


def test_require_level_inside_a_request(app: Flask, api: Api, rt: Runtime, tenant: Any) -> None:
    """Other modules call require_level with exactly its five keyword arguments."""
    bp = Blueprint("paytest", __name__)

    @endpoint(bp, "/paytest", methods=("POST",), permission="charges.create", body=PayIn, response=PayOut,
              action="test.charge")
    def pay(c: RequestContext, body: PayIn) -> PayOut:
        result = require_level(tenant_id=c.tenant_id, verification_id=body.verification_id,
                               customer_ref=body.customer_ref, interaction_id=body.interaction_id,
                               action="charge")
        return PayOut(level=result.level)

    app.register_blueprint(bp, url_prefix="/t")
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.kba(vid)
    body = {"verification_id": vid, "customer_ref": "cust-1", "interaction_id": "call-1"}
    r = api.client.post("/t/paytest", json=body, headers=tenant.headers("agent"))
    assert r.status_code == 403 and r.get_json()["code"] == "verification_insufficient"
    assert r.get_json()["required_level"] == 2
    api.totp(vid)
    r = api.client.post("/t/paytest", json=body, headers=tenant.headers("agent"))
    assert r.status_code == 200 and r.get_json() == {"level": 2}
    with rt.sessions() as s:
        events = s.execute(select(AuditEvent.action, AuditEvent.outcome, AuditEvent.reasons)
                           .where(AuditEvent.tenant_id == tenant.id,
                                  AuditEvent.action.in_(["test.charge", "identity.require"]))
                           .order_by(AuditEvent.seq)).all()
    assert [(a, o) for a, o, _ in events] == [("test.charge", "deny"), ("identity.require", "allow")]
    assert events[0][2] == ["level_too_low"]


def test_openapi_documents_identity_routes(app: Flask) -> None:
    from openapi_spec_validator import validate

    from guard.openapi import build_openapi

    doc = build_openapi(app)
    validate(doc)
    for path in ("/v1/verifications", "/v1/verifications/{verification_id}/otp/check",
                 "/v1/customers/{customer_ref}/factors/change"):
        assert path in doc["paths"], path
    assert "429" in doc["paths"]["/v1/verifications"]["post"]["responses"]
