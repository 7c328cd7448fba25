"""Identity test support: constants, counter-store switch and an API driver."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from guard.auth.factors import ScryptHasher, totp_code
from guard.auth.limits import DbLimitStore, RedisLimitStore
from guard.auth.notifier import LocalOutbox
from guard.auth.verify_service import IdentityRuntime, identity_runtime
from guard.clock import FixedClock
from guard.runtime import Runtime

TOTP_SECRET = base64.b32encode(b"0123456789abcdefghij").decode()  # 160-bit test secret
PHONE = "+14155550123"
PHONE2 = "+14155550188"
EMAIL = "alice.smith@example.com"
ANSWERS = {"first_pet": "Rex the Dog", "birth_city": "São Paulo"}
ALL_FACTORS: dict[str, Any] = {
    "knowledge": [{"question_id": q, "answer": a} for q, a in ANSWERS.items()],
    "phone": PHONE, "email": EMAIL, "totp_secret": TOTP_SECRET, "caller_id_numbers": [PHONE2],
}


def store_params() -> list[str]:
    """Both counter stores when Redis is configured, else the database only."""
    return ["database", "redis"] if os.environ.get("GUARD_TEST_REDIS_URL") else ["database"]


@pytest.fixture
def ident(rt: Runtime, tmp_path: Path) -> IdentityRuntime:
    """The app's identity runtime with a test-cheap scrypt cost and a per-test outbox."""
    ir = identity_runtime(rt, hasher=ScryptHasher(log2_n=4, r=8, p=1))
    ir.outbox = LocalOutbox(tmp_path / "outbox.jsonl")
    return ir


def use_store(rt: Runtime, ir: IdentityRuntime, store: str) -> None:
    """Point the identity counters at the database or at Redis."""
    if store == "redis":
        url = os.environ["GUARD_TEST_REDIS_URL"]
        shared = RedisLimitStore(redis.Redis.from_url(url), rt.settings.redis_prefix)
        ir.limits, ir.store = (lambda _s: shared), "redis"
    else:
        ir.limits, ir.store = DbLimitStore, "database"


@pytest.fixture(params=store_params())
def store(request: pytest.FixtureRequest, rt: Runtime, ident: IdentityRuntime) -> str:
    """Run the test once per counter store."""
    use_store(rt, ident, request.param)
    return str(request.param)


@dataclass
class Api:
    """Drives the identity routes for one tenant."""

    client: FlaskClient
    tenant: Any
    ir: IdentityRuntime
    clock: FixedClock

    def enroll(self, ref: str, role: str = "admin", **factors: Any) -> Any:
        body = factors or ALL_FACTORS
        return self.client.put(f"/v1/customers/{ref}/factors", json=body, headers=self.tenant.headers(role))

    def start(self, ref: str, interaction: str = "call-1", role: str = "agent", **extra: Any) -> Any:
        body = {"customer_ref": ref, "interaction_id": interaction, "channel": "voice", **extra}
        return self.client.post("/v1/verifications", json=body, headers=self.tenant.headers(role))

    def started(self, ref: str, interaction: str = "call-1", role: str = "agent", **extra: Any) -> str:
        r = self.start(ref, interaction, role, **extra)
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])

    def kba(self, vid: str, answers: dict[str, str] | None = None, role: str = "agent") -> Any:
        ans = ANSWERS if answers is None else answers
        body = {"answers": [{"question_id": q, "answer": a} for q, a in ans.items()]}
        return self.client.post(f"/v1/verifications/{vid}/kba", json=body, headers=self.tenant.headers(role))

    def send(self, vid: str, channel: str = "sms", role: str = "agent") -> Any:
        return self.client.post(f"/v1/verifications/{vid}/otp", json={"channel": channel},
                                headers=self.tenant.headers(role))

    def last_code(self) -> str:
        assert self.ir.outbox is not None
        msgs = [m for m in self.ir.outbox.messages() if m["purpose"] == "otp"]
        return str(msgs[-1]["text"].split("code is ")[1][:6])

    def check(self, vid: str, code: str, role: str = "agent") -> Any:
        return self.client.post(f"/v1/verifications/{vid}/otp/check", json={"code": code},
                                headers=self.tenant.headers(role))

    def otp(self, vid: str, channel: str = "sms") -> Any:
        assert self.send(vid, channel).status_code == 200
        return self.check(vid, self.last_code())

    def totp(self, vid: str, code: str | None = None) -> Any:
        c = code or totp_code(base64.b32decode(TOTP_SECRET), at=self.clock.now().timestamp())
        return self.client.post(f"/v1/verifications/{vid}/totp", json={"code": c},
                                headers=self.tenant.headers("agent"))

    def get(self, vid: str, role: str = "agent") -> Any:
        return self.client.get(f"/v1/verifications/{vid}", headers=self.tenant.headers(role))

    def level(self, vid: str) -> int:
        return int(self.get(vid).get_json()["level"])


@pytest.fixture
def api(client: FlaskClient, tenant: Any, ident: IdentityRuntime, clock: FixedClock) -> Api:
    """An API driver for the test tenant."""
    return Api(client, tenant, ident, clock)


class FileClock:
    """A clock every process reads from one file: the test moves time for all of them at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text().strip())

    def set(self, when: datetime) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(when.isoformat())
        os.replace(tmp, self.path)


def worker_process(conn: Any, cfg: dict[str, Any]) -> None:
    """A second (or third) Guard process serving requests the parent test sends it."""
    from guard import create_app
    from guard.config import Settings

    app = create_app(Settings(**cfg["settings"]), clock=FileClock(Path(cfg["clock"])))
    rt = app.extensions["guard"]
    ir = identity_runtime(rt, hasher=ScryptHasher(log2_n=4, r=8, p=1))
    use_store(rt, ir, cfg["store"])
    client = app.test_client()
    headers = {"Authorization": f"Bearer {cfg['token']}", "X-Guard-Actor": f"proc-{os.getpid()}"}
    try:
        while True:
            cmd = conn.recv()
            if cmd is None:
                break
            op, ref, interaction = cmd
            r = client.post("/v1/verifications", headers=headers, json={
                "customer_ref": ref, "interaction_id": interaction, "channel": "voice"})
            out: dict[str, Any] = {"start": r.status_code, "retry_after": r.headers.get("Retry-After"),
                                   "pid": os.getpid()}
            if op == "fail" and r.status_code == 201:
                vid = r.get_json()["id"]
                k = client.post(f"/v1/verifications/{vid}/kba", headers=headers, json={
                    "answers": [{"question_id": "first_pet", "answer": "wrong answer"}]})
                out["passed"] = k.get_json()["passed"]
            conn.send(out)
    finally:
        rt.close()
