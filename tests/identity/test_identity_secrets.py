"""No answer, code, contact or secret in clear in any table, log line, audit event or response."""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import Any

import pytest
from sqlalchemy import select

from guard.auth.factors import normalize_answer, totp_code
from guard.db import Base
from guard.runtime import Runtime
from tests.identity.identity_support import ALL_FACTORS, ANSWERS, EMAIL, PHONE, PHONE2, TOTP_SECRET, Api

pytestmark = pytest.mark.integration
NEW_PHONE = "+14155550177"


def _cell(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def dump_database(rt: Runtime) -> str:
    """Every cell of every table, as text."""
    lines: list[str] = []
    with rt.sessions() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                lines.append(table.name + "\t" + "\t".join(_cell(v) for v in row))
    return "\n".join(lines)


def test_no_secret_in_clear_anywhere(api: Api, rt: Runtime, clock: Any,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    responses: list[str] = []

    def keep(resp: Any) -> Any:
        responses.append(resp.get_data(as_text=True) + json.dumps(dict(resp.headers)))
        return resp

    keep(api.enroll("cust-1"))
    codes: list[str] = []
    # A full level-2 verification by OTP + KBA, with wrong tries of each kind in between.
    vid = keep(api.start("cust-1")).get_json()["id"]
    keep(api.kba(vid, {"first_pet": "Rex the Cat"}))
    keep(api.kba(vid))
    keep(api.send(vid))
    codes.append(api.last_code())
    keep(api.check(vid, str((int(codes[-1]) + 1) % 1_000_000).zfill(6)))
    keep(api.check(vid, codes[-1]))
    keep(api.send(vid, "email"))
    codes.append(api.last_code())
    keep(api.check(vid, codes[-1]))
    keep(api.get(vid))
    # TOTP, then a contact change on TOTP + KBA.
    vid2 = keep(api.start("cust-1", "call-2", role="dialer", ani=PHONE2, stir_shaken="A")).get_json()["id"]
    totp = totp_code(base64.b32decode(TOTP_SECRET), at=clock.now().timestamp())
    codes.append(totp)
    keep(api.totp(vid2, totp))
    keep(api.totp(vid2, totp))  # replay
    keep(api.kba(vid2))
    keep(api.client.post("/v1/customers/cust-1/factors/change", headers=api.tenant.headers("agent"),
                         json={"verification_id": vid2, "interaction_id": "call-2", "kind": "phone",
                               "new_value": NEW_PHONE}))
    keep(api.client.get("/v1/customers/cust-1/factors", headers=api.tenant.headers("admin")))
    keep(api.client.get("/v1/customers/cust-1/verification-status", headers=api.tenant.headers("supervisor")))
    keep(api.client.get("/v1/audit/events?limit=1000", headers=api.tenant.headers("auditor")))
    # Bad input must not echo either.
    keep(api.enroll("cust-2", knowledge=[{"question_id": "bad id!", "answer": "Rex the Dog"}],
                    phone="+1415555012"))
    # The gateway signing secret is shown once by design; it is then kept only encrypted.
    gw = api.client.put("/v1/identity/gateway", json={"url": "https://sms.example.com/hook"},
                        headers=api.tenant.headers("admin")).get_json()
    gateway_secret = gw["signing_secret"]

    assert codes and all(re.fullmatch(r"\d{6}", c) for c in codes)
    plain = [*ANSWERS.values(), *(normalize_answer(a) for a in ANSWERS.values()), "Rex the Cat",
             PHONE, PHONE[2:], PHONE2, PHONE2[2:], NEW_PHONE, NEW_PHONE[2:], EMAIL, TOTP_SECRET,
             base64.b32decode(TOTP_SECRET).decode("latin-1"), gateway_secret]
    haystacks = {"database": dump_database(rt), "logs": caplog.text, "responses": "\n".join(responses)}
    audit = [r for r in responses if '"events"' in r]
    assert audit, "the audit trail was read back"
    assert "identity.kba.check" in haystacks["database"]  # the audit records which method ran
    for where, text in haystacks.items():
        for secret in plain:
            if where == "responses" and secret == gateway_secret:
                continue
            assert secret not in text, f"a secret is in clear in the {where}"
        for code in codes:
            # Codes are short: match them as whole tokens, not inside random ids or hashes.
            assert not re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text), \
                f"a one-time code is in clear in the {where}"
    # The factors are there, just not in clear.
    for table in ("identity_factors", "identity_verifications", "identity_gateways", "audit_events"):
        assert f"\n{table}\t" in "\n" + haystacks["database"]
    assert "scrypt$" in haystacks["database"]
    assert ALL_FACTORS["phone"] not in haystacks["database"]
