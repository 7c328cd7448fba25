"""Helpers for outbound-call tests: a tenant with a fresh national registry and subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from guard.clock import FixedClock
from guard.runtime import Runtime
from tests.tcpa.helpers_tcpa import load_list

AREA_CODES = [212, 213, 208, 214, 215, 305, 401, 504, 617, 850, 907, 303, 800, 405, 410]


@dataclass
class Env:
    """One tenant's view of the outbound API."""

    rt: Runtime
    client: FlaskClient
    tenant: Any
    clock: FixedClock
    tmp: Path

    def post(self, path: str, body: dict[str, Any], role: str = "supervisor",
             status: int | None = None) -> Any:
        resp = self.client.post(f"/v1{path}", json=body, headers=self.tenant.headers(role))
        if status is not None:
            assert resp.status_code == status, resp.get_json()
        return resp.get_json()

    def check(self, role: str = "dialer", **body: Any) -> dict[str, Any]:
        body.setdefault("purpose", "telemarketing")
        body.setdefault("method", "manual")
        return self.post("/calls/check", body, role=role, status=200)  # type: ignore[no-any-return]

    def national(self, numbers: list[str], age_days: float = 1) -> str:
        return load_list(self.rt, "national", numbers, tmp=self.tmp,
                         file_date=self.clock.now() - timedelta(days=age_days))

    def load(self, list_name: str, numbers: list[str], tenant: bool = False) -> str:
        return load_list(self.rt, list_name, numbers, tmp=self.tmp, file_date=self.clock.now(),
                         tenant_id=self.tenant.id if tenant else None)


@pytest.fixture
def env(rt: Runtime, client: FlaskClient, tenant: Any, clock: FixedClock, tmp_path: Path) -> Env:
    """A tenant subscribed to the test area codes, with a fresh (empty-ish) national registry."""
    e = Env(rt, client, tenant, clock, tmp_path)
    e.national(["2015550100"])
    e.post("/dnc/subscriptions", {"area_codes": AREA_CODES}, role="admin", status=200)
    return e
