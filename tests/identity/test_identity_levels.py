"""Levels reached by each factor combination, per policies/identity.yaml."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from guard.auth.verify_policy import IdentityPolicy
from guard.config import DEFAULT_POLICIES_DIR
from guard.policy import load_policy_dir
from tests.identity.identity_support import PHONE, PHONE2, Api

pytestmark = pytest.mark.integration


def _kba(api: Api, vid: str) -> None:
    assert api.kba(vid).get_json()["passed"] is True


def _sms(api: Api, vid: str) -> None:
    assert api.otp(vid, "sms").get_json()["passed"] is True


def _email(api: Api, vid: str) -> None:
    assert api.otp(vid, "email").get_json()["passed"] is True


def _totp(api: Api, vid: str) -> None:
    assert api.totp(vid).get_json()["passed"] is True


STEPS: dict[str, Callable[[Api, str], None]] = {"kba": _kba, "sms": _sms, "email": _email, "totp": _totp}


@pytest.mark.parametrize(("caller_id", "steps", "level"), [
    (False, [], 0),
    (False, ["kba"], 1),
    (True, [], 1),
    (False, ["sms"], 1),
    (False, ["totp"], 1),
    (False, ["email"], 1),
    (False, ["sms", "totp"], 1),        # two possession factors are still one factor
    (True, ["kba"], 1),                 # caller ID + knowledge: no possession factor
    (False, ["email", "kba"], 1),       # email codes are not possession by default
    (False, ["sms", "kba"], 2),
    (False, ["totp", "kba"], 2),
    (True, ["sms"], 2),
    (True, ["totp"], 2),
    (False, ["sms", "email"], 2),
])
def test_level_per_factor_combination(api: Api, caller_id: bool, steps: list[str], level: int) -> None:
    assert api.enroll("cust-1").status_code == 200
    extra: dict[str, Any] = {"ani": PHONE2, "stir_shaken": "A"} if caller_id else {}
    vid = api.started("cust-1", role="dialer" if caller_id else "agent", **extra)
    for step in steps:
        STEPS[step](api, vid)
    body = api.get(vid).get_json()
    assert body["level"] == level
    expected = (["caller_id"] if caller_id else []) + [
        {"sms": "otp_sms", "email": "otp_email"}.get(s, s) for s in steps]
    assert [m["method"] for m in body["methods_passed"]] == expected


@pytest.mark.parametrize(("role", "ani", "attestation"), [
    ("agent", PHONE2, "A"),       # an agent key cannot vouch for caller ID
    ("ai_agent", PHONE2, "A"),
    ("dialer", PHONE2, "B"),      # partial attestation is no evidence
    ("dialer", PHONE2, "C"),
    ("dialer", "+12025550147", "A"),  # not a number on file
    ("dialer", PHONE, "A"),       # the OTP phone is not a caller-ID number on file
])
def test_caller_id_counts_only_from_dialer_with_full_attestation(api: Api, role: str, ani: str,
                                                                 attestation: str) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1", role=role, ani=ani, stir_shaken=attestation)
    assert api.level(vid) == 0


def test_dialer_started_verification_used_by_agent(api: Api) -> None:
    """An IVR/dialer key starts it, an agent key continues it on the same interaction."""
    api.enroll("cust-1")
    vid = api.started("cust-1", role="dialer", ani=PHONE2, stir_shaken="A")
    _sms(api, vid)
    body = api.get(vid).get_json()
    assert body["level"] == 2
    assert body["started_by_role"] == "dialer"
    assert body["started_by_key"] == api.tenant.key_ids["dialer"]


def test_email_code_counts_as_possession_when_tenant_says_so(api: Api) -> None:
    api.enroll("cust-1")
    r = api.client.put("/v1/policies/overrides",
                       json={"overrides": {"identity": {"method_factors": {"otp_email": "possession"}}}},
                       headers=api.tenant.headers("admin"))
    assert r.status_code in (200, 201), r.get_json()
    vid = api.started("cust-1")
    _email(api, vid)
    _kba(api, vid)
    assert api.level(vid) == 2


def _policy(**patch: Any) -> dict[str, Any]:
    raw = yaml.safe_load((DEFAULT_POLICIES_DIR / "identity.yaml").read_text())
    raw.update(patch)
    return raw


def test_shipped_policy_levels() -> None:
    p = load_policy_dir(DEFAULT_POLICIES_DIR).get("identity")
    assert isinstance(p, IdentityPolicy)
    assert {a: r.level for a, r in p.actions.items()} == {
        "disclose_account": 1, "charge": 2, "refund": 2, "change_contact": 2, "privacy_request": 2,
        "ccpa_opt_out": 0}
    assert p.actions["change_contact"].fresh_minutes == 5
    assert p.level_for(["caller_id"]) == 1
    assert p.level_for(["kba", "caller_id"]) == 1
    assert p.level_for(["otp_sms", "kba"]) == 2


_ACTIONS = {"disclose_account": {"level": 1}, "charge": {"level": 2}, "refund": {"level": 2},
            "change_contact": {"level": 2, "fresh_minutes": 5}, "privacy_request": {"level": 2},
            "ccpa_opt_out": {"level": 0}}


@pytest.mark.parametrize(("patch", "message"), [
    ({"levels": [{"level": 2, "requires": ["caller_id"]}]}, "caller_id alone"),
    ({"levels": [{"level": 2, "requires": ["knowledge"], "plus_one_of": ["email_code"]}]},
     "needs possession plus another factor"),
    ({"levels": [{"level": 2, "requires": ["possession"], "plus_one_of": ["possession"]}]},
     "needs possession plus another factor"),
    ({"method_factors": {"kba": "possession", "caller_id": "caller_id", "otp_sms": "possession",
                         "totp": "possession", "otp_email": "email_code"}}, "kba"),
    ({"caller_id": {"attestations": ["A", "B"]}}, "only attestation A"),
    ({"actions": {**_ACTIONS, "charge": {"level": 1}}}, "charge: level may not be below 2"),
    ({"actions": {**_ACTIONS, "change_contact": {"level": 2}}}, "fresh_minutes is required"),
    ({"actions": {**_ACTIONS, "balance": {"level": 0}}}, "only actions in no_verification_by_law"),
    ({"limits": {"max_consecutive_failures": 101}}, "max_consecutive_failures"),
])
def test_policy_refuses_unsafe_rules(patch: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    raw = _policy()
    for key, value in patch.items():
        raw[key] = {**raw[key], **value} if key == "limits" else value
    with pytest.raises(ValidationError, match=message):
        IdentityPolicy.model_validate(raw)


def test_tenant_may_tighten_but_not_weaken(api: Api) -> None:
    h = api.tenant.headers("admin")
    r = api.client.put("/v1/policies/overrides", headers=h,
                       json={"overrides": {"identity": {"actions": {"disclose_account": {"level": 2}}}}})
    assert r.status_code == 200
    r = api.client.put("/v1/policies/overrides", headers=h,
                       json={"overrides": {"identity": {"actions": {"refund": {"level": 1}}}}})
    assert r.status_code == 422 and r.get_json()["errors"][0]["loc"][:2] == ["body", "identity"]
