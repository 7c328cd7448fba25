"""Benchmark: scrub 1,000,000 E.164 numbers in process and over HTTP, all rules on.

Prints numbers/s of the in-process scrub (cold prefix table, then warm) and its ratio to a
per-number `phonenumbers.parse` loop over the same input in the same run, then the end-to-end
time of POST /v1/calls/scrub with the same list through a local HTTP server (port 0).
Usage: python bench/tcpa_scrub.py [N] (TCPA_BENCH_DB=<url>, default a temp SQLite file).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).parent))
from tcpa_registry_import import area_codes, synth_numbers, write_file

from guard import create_app
from guard.auth.service import create_key, create_tenant
from guard.config import Settings
from guard.db import transaction
from guard.ids import new_id
from guard.migrate import upgrade
from guard.tcpa import registry, scrub
from guard.tcpa.models import Consent, InternalDnc, LineType, Subscription


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    reg_n = int(os.environ.get("TCPA_BENCH_REGISTRY_N", "20000000"))
    work = Path(tempfile.mkdtemp(prefix="guard-scrub-bench-"))
    url = os.environ.get("TCPA_BENCH_DB") or f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    settings = Settings(instance_dir=work, database_url=url, keyring_path=work / "bench.keyring",
                        log_json=True, log_level="WARNING")
    app = create_app(settings)
    rt = app.extensions["guard"]
    import numpy as np

    phones = synth_numbers(n, seed=7)
    now = datetime.now(UTC)
    reg_file = work / "national.txt"
    write_file(reg_file, reg_n)
    parsed = registry.parse_file(reg_file, changes=False)
    with transaction(rt.sessions) as s:
        registry.import_registry(s, list_name="national", parsed=parsed, changes=False, tenant_id=None,
                                 file_date=now - timedelta(days=1), clock=rt.clock)
        tenant = create_tenant(s, f"bench-{uuid.uuid4().hex[:8]}", clock=rt.clock)
        _, token = create_key(s, tenant_id=tenant.id, roles=["dialer"], clock=rt.clock, environment="test",
                              pepper=rt.keyring.current("api_key_pepper").material)
        for a in area_codes(np.random.default_rng(20261123)).tolist():
            s.add(Subscription(tenant_id=tenant.id, area_code=a, created_at=now))
        # Per-number rows for a slice of the list: consents, internal DNC, landline markings.
        for i, p in enumerate(phones[:20000]):
            if i % 2 == 0:
                s.add(Consent(id=new_id("cns"), tenant_id=tenant.id, phone=p, kind="written",
                              purposes=["telemarketing"], source="bench", text_shown="ok", channel="web",
                              captured_at=now - timedelta(days=10), created_at=now, evidence={}))
            elif i % 5 == 1:
                s.add(InternalDnc(tenant_id=tenant.id, phone=p, source="bench", added_at=now))
            else:
                s.add(LineType(tenant_id=tenant.id, phone=p, line_type="landline", updated_at=now))
    del parsed
    policy = rt.policies.base.get("outbound")
    at = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # a Tuesday afternoon in every US zone
    ctx = scrub.ScrubContext(purpose="telemarketing", method="autodialer", at=at)

    t0 = time.perf_counter()
    for p in phones:
        phonenumbers.parse(p, "US")
    base = time.perf_counter() - t0
    print(f"baseline phonenumbers.parse loop: {n / base:,.0f} numbers/s ({base:.2f} s for {n:,})")

    for label in ("cold prefix table", "warm"):
        t0 = time.perf_counter()
        with transaction(rt.sessions) as s:
            res = scrub.scrub(s, tenant_id=tenant.id, policy=policy, ctx=ctx, phones=phones, now=now,
                              index=registry.index_for(rt), table=scrub.prefix_table(rt.extras))
        dt = time.perf_counter() - t0
        print(f"in-process scrub ({label}): {n / dt:,.0f} numbers/s ({dt:.2f} s); "
              f"target >= 2,000,000/s; ratio to parse loop {base / dt:.1f}x (target >= 50x)")
    print(f"  totals: {res.totals()}")
    t0 = time.perf_counter()
    chunks = scrub.render(res, "ndjson")
    root = scrub.digest(chunks)
    print(f"  render + Merkle digest: {time.perf_counter() - t0:.2f} s (root {root[:16]}...)")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = json.dumps({"numbers": phones, "purpose": "telemarketing", "method": "autodialer",
                       "at": at.isoformat()}).encode()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=600)
    conn.request("POST", "/v1/calls/scrub", body=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Guard-Actor": "bench"})
    resp = conn.getresponse()
    data = resp.read()
    dt = time.perf_counter() - t0
    lines = data.count(b"\n")
    print(f"POST /v1/calls/scrub {n:,} numbers over HTTP: {dt:.2f} s end to end (status {resp.status}, "
          f"{lines:,} lines, {len(body) / 2**20:.0f} MiB in, {len(data) / 2**20:.0f} MiB out); target <= 5 s")
    server.shutdown()
    rt.close()


if __name__ == "__main__":
    main()
