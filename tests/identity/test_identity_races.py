"""Races: concurrent wrong codes on one verification, one TOTP code on many verifications."""

from __future__ import annotations

import base64
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from guard.auth.factors import totp_code
from tests.identity.identity_support import TOTP_SECRET, Api

pytestmark = pytest.mark.integration


def test_concurrent_wrong_codes_lock_at_exactly_five(app: Flask, api: Api, store: str) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    h = api.tenant.headers("agent")

    def attempt(_: int) -> int:
        client = app.test_client()  # one connection per thread: real concurrency in the database
        r = client.post(f"/v1/verifications/{vid}/otp/check", json={"code": "000000"}, headers=h)
        return int(r.status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(attempt, range(16)))
    assert statuses == {200: 5, 423: 11}
    body = api.get(vid).get_json()
    assert body["status"] == "locked" and body["attempts_remaining"] == 0
    status = api.client.get("/v1/customers/cust-1/verification-status",
                            headers=api.tenant.headers("supervisor")).get_json()
    assert status["failed_verifications"] == 1 and status["consecutive_failures"] == 5


def test_one_totp_code_is_accepted_once_under_concurrency(app: Flask, api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    vids = [api.started("cust-1", f"call-{i}") for i in range(6)]
    code = totp_code(base64.b32decode(TOTP_SECRET), at=clock.now().timestamp())
    h = api.tenant.headers("agent")

    def attempt(vid: str) -> Any:
        r = app.test_client().post(f"/v1/verifications/{vid}/totp", json={"code": code}, headers=h)
        return r.get_json()["passed"], r.get_json()["reason"]

    with ThreadPoolExecutor(6) as pool:
        results = Counter(pool.map(attempt, vids))
    assert results == {(True, None): 1, (False, "replayed"): 5}
