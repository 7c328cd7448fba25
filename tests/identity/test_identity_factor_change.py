"""Enrollment is admin-only; a contact changes only on a fresh level-2 verification that did not use it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity.identity_support import EMAIL, PHONE, PHONE2, Api

pytestmark = pytest.mark.integration
NEW_PHONE = "+14155550177"


def change(api: Api, vid: str, kind: str = "phone", value: str = NEW_PHONE, role: str = "agent",
           ref: str = "cust-1", interaction: str = "call-1") -> Any:
    return api.client.post(f"/v1/customers/{ref}/factors/change", headers=api.tenant.headers(role),
                           json={"verification_id": vid, "interaction_id": interaction, "kind": kind,
                                 "new_value": value})


@pytest.mark.parametrize("role", ["agent", "ai_agent", "dialer", "supervisor", "auditor"])
def test_only_admin_enrolls(api: Api, role: str) -> None:
    r = api.enroll("cust-1", role=role)
    assert r.status_code == 403 and r.get_json()["code"] == "forbidden"
    assert api.client.get("/v1/customers/cust-1/factors", headers=api.tenant.headers(role)).status_code == 403


def test_enrollment_is_masked(api: Api) -> None:
    body = api.enroll("cust-1").get_json()
    assert body["phone"] == "+1********23" and body["email"] == "a***@example.com"
    assert body["knowledge_questions"] == ["birth_city", "first_pet"] and body["totp"] is True
    assert body["caller_id_numbers"] == ["+1********88"]
    r = api.client.get("/v1/customers/cust-1/factors", headers=api.tenant.headers("admin"))
    assert r.get_json() == body


@pytest.mark.parametrize(("field", "value"), [
    ("phone", "12"), ("email", "not-an-email"), ("totp_secret", "short"), ("caller_id_numbers", ["x"]),
])
def test_enrollment_rejects_bad_factors_naming_the_field(api: Api, field: str, value: Any) -> None:
    r = api.enroll("cust-1", **{field: value})
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"][:2] == ["body", field]
    assert str(value if isinstance(value, str) else value[0]) not in r.get_json()["detail"]


def test_change_refused_when_verification_used_the_old_phone(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.otp(vid, "sms")
    api.kba(vid)
    assert api.level(vid) == 2
    r = change(api, vid)
    assert r.status_code == 403 and r.get_json()["code"] == "verification_insufficient"
    assert r.get_json()["reasons"] == ["verification_used_replaced_factor"]
    # Changing the email instead is fine: that factor was not used.
    assert change(api, vid, "email", "new.alice@example.com").status_code == 200


def test_change_refused_when_caller_id_was_the_old_number(api: Api) -> None:
    """Caller ID matched the very number being replaced (a number on file for both)."""
    api.enroll("cust-1", **{"knowledge": [{"question_id": "q", "answer": "a"}], "phone": PHONE,
                            "totp_secret": None, "caller_id_numbers": [PHONE]})
    vid = api.started("cust-1", role="dialer", ani=PHONE, stir_shaken="A")
    api.send(vid)
    api.check(vid, api.last_code())
    assert change(api, vid).get_json()["reasons"] == ["verification_used_replaced_factor"]


def test_change_with_other_factors_notifies_old_contact(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.totp(vid)
    api.kba(vid)
    r = change(api, vid)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["old_contact_notified"] is True and body["factors"]["phone"] == "+1********77"
    assert api.ir.outbox is not None
    notice = api.ir.outbox.messages()[-1]
    assert notice["purpose"] == "contact_changed" and notice["to"] == PHONE
    # New codes go to the new phone.
    vid2 = api.started("cust-1", "call-2")
    api.send(vid2)
    assert api.ir.outbox.messages()[-1]["to"] == NEW_PHONE
    # The old phone's caller-ID number is a separate factor and stays.
    assert body["factors"]["caller_id_numbers"] == ["+1********88"]


def test_change_needs_fresh_level_two(api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.kba(vid)
    r = change(api, vid)
    assert r.status_code == 403 and r.get_json()["code"] == "verification_insufficient"
    api.totp(vid)
    clock.advance(minutes=5, seconds=1)
    r = change(api, vid)
    assert r.get_json()["reasons"] == ["verification_not_fresh"]
    assert change(api, vid, interaction="call-2").get_json()["code"] == "verification_mismatch"


def test_change_binding_and_roles(api: Api) -> None:
    api.enroll("cust-1")
    api.enroll("cust-2")
    vid = api.started("cust-1")
    api.totp(vid)
    api.kba(vid)
    assert change(api, vid, ref="cust-2").get_json()["code"] == "verification_mismatch"
    assert change(api, vid, role="ai_agent").status_code == 403  # AI agents never change factors
    r = change(api, vid, value="12")
    assert r.status_code == 422 and r.get_json()["errors"][0]["loc"] == ["body", "new_value"]
    assert "12" not in r.get_json()["detail"]


def test_agents_cannot_add_a_contact_from_scratch(api: Api) -> None:
    api.enroll("cust-1", **{"knowledge": [{"question_id": "q", "answer": "a"}], "phone": PHONE,
                            "totp_secret": None, "caller_id_numbers": [PHONE2]})
    vid = api.started("cust-1", role="dialer", ani=PHONE2, stir_shaken="A")
    api.otp(vid, "sms")
    r = change(api, vid, "email", EMAIL)
    assert r.status_code == 404 and r.get_json()["code"] == "factor_not_enrolled"
