"""No enumeration: unknown and known customers get identical answers after identical work."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import guard.auth.factors as fx
import guard.auth.verify_service as svc
from tests.identity.identity_support import Api

pytestmark = pytest.mark.integration


class Work:
    """Counts the expensive or revealing operations each request performs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        real_kdf, real_hash, real_totp = fx.ScryptHasher._kdf, fx.code_hash, fx.totp_match

        def kdf(salt: bytes, log2_n: int, r: int, p: int) -> Any:
            self.calls["scrypt"] += 1
            return real_kdf(salt, log2_n, r, p)

        def code_hash(*a: Any, **kw: Any) -> str:
            self.calls["code_hash"] += 1
            return real_hash(*a, **kw)

        def totp_match(*a: Any, **kw: Any) -> int | None:
            self.calls["totp"] += 1
            return real_totp(*a, **kw)

        monkeypatch.setattr(fx.ScryptHasher, "_kdf", staticmethod(kdf))
        monkeypatch.setattr(fx, "code_hash", code_hash)
        monkeypatch.setattr(fx, "totp_match", totp_match)
        real_add = svc.RedisLimitStore.window_add, svc.DbLimitStore.window_add

        def counting(real: Any) -> Any:
            def window_add(store: Any, *a: Any, **kw: Any) -> Any:
                self.calls["window_add"] += 1
                return real(store, *a, **kw)
            return window_add

        monkeypatch.setattr(svc.RedisLimitStore, "window_add", counting(real_add[0]))
        monkeypatch.setattr(svc.DbLimitStore, "window_add", counting(real_add[1]))

    def take(self) -> Counter[str]:
        out = Counter(self.calls)
        self.calls.clear()
        return out


def _norm(resp: Any, vid: str, ref: str) -> tuple[int, str]:
    text = resp.get_data(as_text=True).replace(vid, "VID").replace(ref, "REF")
    return resp.status_code, text


def _session(api: Api, ref: str, interaction: str, work: Work) -> tuple[list[Any], list[Counter[str]]]:
    out: list[Any] = []
    cost: list[Counter[str]] = []
    r = api.start(ref, interaction)
    vid = r.get_json()["id"]
    steps = [
        lambda: r,
        lambda: api.kba(vid, {"first_pet": "wrong answer"}),
        lambda: api.kba(vid, {"no_such_question": "anything"}),
        lambda: api.send(vid, "sms"),
        lambda: api.send(vid, "email"),
        lambda: api.check(vid, "000000"),
        lambda: api.client.post(f"/v1/verifications/{vid}/totp", json={"code": "000000"},
                                headers=api.tenant.headers("agent")),
        lambda: api.get(vid),
    ]
    work.take()
    for i, step in enumerate(steps):
        resp = step()
        out.append(_norm(resp, vid, ref))
        cost.append(work.take() if i else Counter())
    return out, cost


def test_unknown_and_known_customers_are_indistinguishable(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api.enroll("cust-known")
    work = Work(monkeypatch)
    known, known_cost = _session(api, "cust-known", "call-1", work)
    unknown, unknown_cost = _session(api, "cust-ghost", "call-1", work)
    for i, (a, b) in enumerate(zip(known, unknown, strict=True)):
        assert a == b, f"step {i} differs"
    assert known_cost == unknown_cost
    # The work is real: one scrypt check per answer, a code hashed per send and check, a TOTP
    # computation per code, the same counters touched.
    assert known_cost[1]["scrypt"] == 1 and known_cost[2]["scrypt"] == 1
    assert known_cost[3]["code_hash"] == 1 and known_cost[3]["window_add"] == 1
    assert known_cost[6]["totp"] == 1
    # Only the known customer's code was actually delivered.
    assert api.ir.outbox is not None
    assert len([m for m in api.ir.outbox.messages() if m["purpose"] == "otp"]) == 2


def test_wrong_question_and_wrong_answer_look_the_same(api: Api) -> None:
    api.enroll("cust-known")
    vid = api.started("cust-known")
    a = api.kba(vid, {"first_pet": "wrong"}).get_json()
    b = api.kba(vid, {"not_enrolled": "x"}).get_json()
    assert (a["passed"], a["reason"]) == (b["passed"], b["reason"]) == (False, "incorrect")


def test_methods_available_is_the_same_for_everyone(api: Api) -> None:
    api.enroll("cust-known", knowledge=[{"question_id": "q", "answer": "a"}])
    a = api.start("cust-known").get_json()
    b = api.start("cust-ghost").get_json()
    assert a["methods_available"] == b["methods_available"] == ["kba", "otp_sms", "totp", "otp_email"]
