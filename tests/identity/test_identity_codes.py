"""One-time codes (reuse, expiry, brute force, send limits, signed webhook) and TOTP (window, replay)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from guard.auth.factors import totp_code
from guard.auth.notifier import SIGNATURE_HEADER, verify_signature
from tests.identity.identity_support import EMAIL, PHONE, TOTP_SECRET, Api

pytestmark = pytest.mark.integration
SECRET = base64.b32decode(TOTP_SECRET)


def wrong(code: str) -> str:
    return str((int(code) + 1) % 1_000_000).zfill(6)


def test_otp_single_use(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    assert api.send(vid).status_code == 200
    code = api.last_code()
    assert api.check(vid, code).get_json()["passed"] is True
    again = api.check(vid, code).get_json()
    assert again["passed"] is False and again["reason"] == "no_code"
    # The code is spent for any other verification too (it is bound to its own).
    other = api.started("cust-1", "call-2")
    assert api.check(other, code).get_json()["passed"] is False


def test_otp_expires_after_ten_minutes(api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.send(vid)
    code = api.last_code()
    clock.advance(minutes=9, seconds=59)
    api.kba(vid)  # keep the verification itself alive
    clock.advance(seconds=1)
    r = api.check(vid, code).get_json()
    assert r["passed"] is False and r["reason"] == "expired"


def test_new_send_replaces_the_code(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.send(vid)
    first = api.last_code()
    api.send(vid)
    second = api.last_code()
    if first != second:
        assert api.check(vid, first).get_json()["passed"] is False
    assert api.check(vid, second).get_json()["passed"] is True


def test_otp_brute_force_locks_after_five(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.send(vid)
    code = api.last_code()
    for i in range(5):
        body = api.check(vid, wrong(code)).get_json()
        assert body["passed"] is False and body["attempts_remaining"] == 4 - i
    assert body["verification"]["status"] == "locked"
    r = api.check(vid, code)  # even the right code is refused now
    assert r.status_code == 423 and r.get_json()["code"] == "verification_locked"
    assert api.send(vid).status_code == 423
    assert api.get(vid).get_json()["level"] == 0


def test_otp_send_limit_per_verification(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    for i in range(5):
        r = api.send(vid)
        assert r.status_code == 200 and r.get_json()["sends_remaining"] == 4 - i
    r = api.send(vid)
    assert r.status_code == 429 and r.get_json()["code"] == "otp_send_limit"


def test_otp_send_limit_per_destination(api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    for i in range(10):
        vid = api.started("cust-1", f"call-{i}")
        assert api.send(vid).status_code == 200
    vid = api.started("cust-1", "call-x")
    r = api.send(vid)
    assert r.status_code == 429 and r.get_json()["code"] == "otp_destination_limit"
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    # The email destination has its own budget.
    assert api.send(vid, "email").status_code == 200
    clock.advance(minutes=61)
    vid = api.started("cust-1", "call-y")
    assert api.send(vid).status_code == 200


def test_otp_email_goes_to_email(api: Api) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    api.send(vid, "email")
    assert api.ir.outbox is not None
    msg = api.ir.outbox.messages()[-1]
    assert msg["to"] == EMAIL and msg["channel"] == "email"


class _Gateway(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 202

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, type[_Gateway]]]:
    """A local SMS/email gateway on an ephemeral port."""
    handler = type("Gateway", (_Gateway,), {"received": [], "status": 202})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sms", handler
    server.shutdown()
    server.server_close()


def test_webhook_delivery_is_signed(api: Api, tenant: Any, clock: Any,
                                    gateway: tuple[str, type[_Gateway]]) -> None:
    url, handler = gateway
    r = api.client.put("/v1/identity/gateway", json={"url": url}, headers=tenant.headers("admin"))
    assert r.status_code == 200
    secret = bytes.fromhex(r.get_json()["signing_secret"])
    api.enroll("cust-1")
    vid = api.started("cust-1")
    assert api.send(vid).status_code == 200
    assert api.ir.outbox is not None and api.ir.outbox.messages() == []  # not the dev outbox
    headers, body = handler.received[-1]
    now = int(clock.now().timestamp())
    assert verify_signature(secret, body, headers[SIGNATURE_HEADER], now=now)
    assert not verify_signature(secret, body + b" ", headers[SIGNATURE_HEADER], now=now)
    assert not verify_signature(b"x" * 32, body, headers[SIGNATURE_HEADER], now=now)
    assert not verify_signature(secret, body, headers[SIGNATURE_HEADER], now=now + 3600)  # replayed later
    payload = json.loads(body)
    assert payload["to"] == PHONE and payload["purpose"] == "otp"
    code = payload["text"].split("code is ")[1][:6]
    assert api.check(vid, code).get_json()["passed"] is True


def test_webhook_failure_is_503_and_audited(api: Api, tenant: Any,
                                            gateway: tuple[str, type[_Gateway]]) -> None:
    url, handler = gateway
    handler.status = 500
    api.client.put("/v1/identity/gateway", json={"url": url}, headers=tenant.headers("admin"))
    api.enroll("cust-1")
    vid = api.started("cust-1")
    r = api.send(vid)
    assert r.status_code == 503 and r.get_json()["code"] == "otp_delivery_unavailable"


def test_gateway_url_must_be_https(api: Api, tenant: Any) -> None:
    r = api.client.put("/v1/identity/gateway", json={"url": "http://sms.example.com/x"},
                       headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.get_json()["errors"][0]["loc"] == ["body", "url"]
    assert api.client.put("/v1/identity/gateway", json={"url": "https://sms.example.com/x"},
                          headers=tenant.headers("agent")).status_code == 403


def test_totp_window_is_one_step(api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    now = clock.now().timestamp()
    for offset, ok in ((-60, False), (60, False), (-30, True), (30, True)):
        vid = api.started("cust-1", f"call-{offset}")
        clock.advance(seconds=30)  # a fresh step for each try, so replay protection stays out of it
        now = clock.now().timestamp()
        body = api.totp(vid, totp_code(SECRET, at=now + offset)).get_json()
        assert body["passed"] is ok, offset


def test_totp_step_accepted_once(api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    code = totp_code(SECRET, at=clock.now().timestamp())
    vid = api.started("cust-1")
    assert api.totp(vid, code).get_json()["passed"] is True
    other = api.started("cust-1", "call-2")
    replay = api.totp(other, code).get_json()
    assert replay["passed"] is False and replay["reason"] == "replayed"
    clock.advance(seconds=30)
    assert api.totp(other).get_json()["passed"] is True


def test_totp_older_step_after_newer_is_refused(api: Api, clock: Any) -> None:
    api.enroll("cust-1")
    now = clock.now().timestamp()
    vid = api.started("cust-1")
    assert api.totp(vid, totp_code(SECRET, at=now + 30)).get_json()["passed"] is True
    vid2 = api.started("cust-1", "call-2")
    assert api.totp(vid2, totp_code(SECRET, at=now)).get_json()["reason"] == "replayed"


@pytest.mark.parametrize("code", ["12345", "abcdef", "1234567890", "", " 123456"])
def test_bad_code_shape_is_422_without_echo(api: Api, code: str) -> None:
    api.enroll("cust-1")
    vid = api.started("cust-1")
    r = api.check(vid, code)
    if code == " 123456":  # stripped to a valid shape: a wrong code, not a 422
        assert r.status_code == 200
        return
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"] == ["body", "code"]
    if code:
        assert code not in r.get_data(as_text=True)
