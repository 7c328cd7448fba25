"""Several dialer processes checking the same person at once with record: true cannot pass a cap."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from race_worker import dial
from sqlalchemy import func, select

from guard.db import transaction
from guard.tcpa.models import CallAttempt

pytestmark = pytest.mark.integration
PROCESSES = 4
TRIES = 4


@pytest.mark.parametrize("body,cap", [
    # Florida: 3 marketing calls per person and subject in 24 hours.
    ({"phone": "305-555-4444", "purpose": "telemarketing", "method": "manual", "campaign": "race"}, 3),
    # Regulation F: 7 attempts in 7 days per debt, across the consumer's numbers.
    ({"phone": "212-555-4444", "purpose": "debt_collection", "method": "manual", "debt_ref": "D-RACE"}, 7),
])
def test_concurrent_recording_checks_never_exceed_the_cap(env: Any, settings: Any, body: dict[str, Any],
                                                          cap: int) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the multi-process race runs on PostgreSQL (SQLite serializes every writer)")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    values = {k: getattr(settings, k) for k in ("instance_dir", "database_url", "keyring_path",
                                                 "log_json", "redis_url", "redis_prefix")}
    procs = []
    for i in range(PROCESSES):
        # The Reg F case spreads the debt over two numbers: the count is per debt, not per number.
        b = dict(body, phone="212-555-4445") if body.get("debt_ref") and i % 2 else dict(body)
        p = ctx.Process(target=dial, args=(values, env.clock.now().isoformat(),
                                           env.tenant.headers("dialer"), dict(b, record=True), TRIES,
                                           barrier, out))
        p.start()
        procs.append(p)
    results = [r for _ in procs for r in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(status == 200 for status, _ in results), results
    assert sum(1 for _, d in results if d == "allow") == cap
    with transaction(env.rt.sessions) as s:
        n = s.execute(select(func.count()).select_from(CallAttempt).where(
            CallAttempt.tenant_id == env.tenant.id)).scalar_one()
    assert n == cap
