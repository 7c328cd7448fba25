"""Several processes tokenizing the same card at once get one token (one row) on each backend."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

from sqlalchemy import func, select

from guard.config import Settings
from guard.db import transaction
from guard.pci.models import VaultCard
from guard.runtime import Runtime
from tests.conftest import TenantKeys


def _worker(settings: dict[str, Any], headers: dict[str, str], start: Any, out: Any) -> None:
    from guard import create_app

    app = create_app(Settings(**settings))
    client = app.test_client()
    start.wait(30)
    tokens = []
    for month in (1, 2, 3, 4, 5):
        r = client.post("/v1/cards", json={"number": "6011111111111117", "exp_month": month,
                                           "exp_year": 2030}, headers=headers)
        tokens.append((r.status_code, r.json.get("token")))
    out.put(tokens)
    app.extensions["guard"].close()


def test_same_card_from_several_processes(settings: Settings, tenant: TenantKeys, rt: Runtime) -> None:
    # fork: the child builds its own app, engine and pools; it touches none of the parent's.
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    values = settings.model_dump(mode="python")
    procs = [ctx.Process(target=_worker, args=(values, tenant.headers("agent"), start, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    by_month: dict[int, set[str]] = {}
    for tokens in results:
        for month, (status, token) in enumerate(tokens, start=1):
            assert status in (200, 201), status
            by_month.setdefault(month, set()).add(token)
    assert all(len(toks) == 1 for toks in by_month.values()), by_month
    with transaction(rt.sessions) as s:
        n = s.execute(select(func.count()).select_from(VaultCard).where(
            VaultCard.tenant_id == tenant.id, VaultCard.last4 == "1117")).scalar_one()
    assert n == 5
