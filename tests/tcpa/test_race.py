"""Several dialer processes checking the same person at once with record: true cannot pass a cap."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from sqlalchemy import func, select

from guard.db import transaction
from guard.tcpa.models import CallAttempt
from tests.tcpa.race_worker import dial

pytestmark = pytest.mark.integration
PROCESSES = 4
TRIES = 4
# Florida: 3 marketing calls per person and subject in 24 hours.
FLORIDA = {"phone": "305-555-4444", "purpose": "telemarketing", "method": "manual", "campaign": "race",
           "record": True}
# Regulation F: 7 attempts in 7 days per debt, across the consumer's numbers.
REG_F = {"purpose": "debt_collection", "method": "manual", "debt_ref": "D-RACE", "record": True}


def test_concurrent_recording_checks_never_exceed_a_cap(env: Any, settings: Any) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the multi-process race runs on PostgreSQL (SQLite serializes every writer)")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    values = {k: getattr(settings, k) for k in ("instance_dir", "database_url", "keyring_path",
                                                 "log_json", "redis_url", "redis_prefix")}
    procs = []
    for i in range(PROCESSES):
        # The Reg F round spreads the debt over two numbers: the count is per debt, not per number.
        reg_f = dict(REG_F, phone="212-555-4445" if i % 2 else "212-555-4444")
        p = ctx.Process(target=dial, args=(values, env.clock.now().isoformat(), env.tenant.headers("dialer"),
                                           [FLORIDA, reg_f], TRIES, barrier, out))
        p.start()
        procs.append(p)
    results = [r for _ in procs for r in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(status == 200 for _, status, _ in results), results
    assert sum(1 for n, _, d in results if n == 0 and d == "allow") == 3
    assert sum(1 for n, _, d in results if n == 1 and d == "allow") == 7
    with transaction(env.rt.sessions) as s:
        n = s.execute(select(func.count()).select_from(CallAttempt).where(
            CallAttempt.tenant_id == env.tenant.id)).scalar_one()
    assert n == 10
