"""Benchmark: POST /v1/calls/check requests/s under gunicorn vs a bare INSERT + COMMIT route.

Both run with the same gunicorn config (workers = 2 x cores, sync) on the same PostgreSQL
database, driven by the same closed-loop client threads for the same time, in one run. Prints
requests/s of each, the ratio (target >= 0.7) and the check's p50/p99 latency at that load.
Usage: TCPA_BENCH_DB=postgresql+psycopg://... python bench/tcpa_check_http.py [seconds] [clients]
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))
from tcpa_registry_import import synth_numbers, write_file

from guard.auth.service import create_key, create_tenant
from guard.clock import SystemClock
from guard.db import make_engine, make_session_factory, transaction
from guard.migrate import upgrade
from guard.tcpa import registry
from guard.tcpa.models import Subscription


def start(app: str, env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start gunicorn on port 0 and read the port it got from its log."""
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", "127.0.0.1:0",
                             "--log-level", "info", app], env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline().decode()
        m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            port = int(m.group(1))
            deadline = time.time() + 60
            while time.time() < deadline:  # wait until the workers answer
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/healthz")
                    conn.getresponse().read()
                    break
                except OSError:
                    time.sleep(0.5)
            time.sleep(3)  # let every worker finish booting
            return proc, port
        if not line and proc.poll() is not None:
            raise RuntimeError("gunicorn did not start")


def load(port: int, path: str, bodies: list[bytes], headers: dict[str, str], seconds: float,
         clients: int) -> tuple[float, list[float], int]:
    """Closed-loop clients for `seconds`; returns requests/s, latencies, errors."""
    lat: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def run(k: int) -> None:
        i = k
        mine: list[float] = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            # gunicorn's sync workers close every connection: one connection per request.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                with lock:
                    errors[0] += 1
            i += clients
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.perf_counter() - t0), sorted(lat), errors[0]


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    url = os.environ["TCPA_BENCH_DB"]
    work = Path(tempfile.mkdtemp(prefix="guard-check-bench-"))
    upgrade(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_bare (id text primary key, body text)"))
    eng.dispose()
    keyring = work / "bench.keyring"
    env = {**os.environ, "GUARD_DATABASE_URL": url, "GUARD_INSTANCE_DIR": str(work),
           "GUARD_KEYRING_PATH": str(keyring), "GUARD_LOG_LEVEL": "WARNING"}
    # Build the keyring and the tenant the way the server will see them.
    from guard.config import Settings

    settings = Settings(instance_dir=work, database_url=url, keyring_path=keyring)
    from guard.runtime import build_runtime

    rt = build_runtime(settings)  # creates the keyring file the server processes will read
    sessions = make_session_factory(make_engine(url))
    reg = work / "national.txt"
    write_file(reg, 2_000_000)
    parsed = registry.parse_file(reg, changes=False)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        registry.import_registry(s, list_name="national", parsed=parsed, changes=False, tenant_id=None,
                                 file_date=now - timedelta(days=1), clock=SystemClock())
        tenant = create_tenant(s, f"bench-{uuid.uuid4().hex[:8]}", clock=SystemClock())
        _, token = create_key(s, tenant_id=tenant.id, roles=["dialer"], clock=SystemClock(),
                              environment="test", pepper=rt.keyring.current("api_key_pepper").material)
        for a in range(200, 1000):
            s.add(Subscription(tenant_id=tenant.id, area_code=a, created_at=now))
    workers = 2 * (os.cpu_count() or 1)
    phones = synth_numbers(5000, seed=11)
    check_bodies = [json.dumps({"phone": p, "purpose": "informational", "method": "manual"}).encode()
                    for p in phones]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "X-Guard-Actor": "bench"}
    bare, bport = start("tcpa_bare_app:app", {**env, "PYTHONPATH": str(Path(__file__).parent)}, workers)
    try:
        load(bport, "/insert", [b"{}"], {"Content-Type": "application/json"}, 2, clients)  # warm up
        b_rps, _, b_err = load(bport, "/insert", [b"{}"], {"Content-Type": "application/json"}, seconds,
                               clients)
    finally:
        bare.terminate()
        bare.wait()
    guard, gport = start("guard:create_app()", env, workers)
    try:
        load(gport, "/v1/calls/check", check_bodies, headers, 2, clients)  # warm up
        g_rps, lat, g_err = load(gport, "/v1/calls/check", check_bodies, headers, seconds, clients)
    finally:
        guard.terminate()
        guard.wait()
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[int(len(lat) * 0.99)] * 1000
    print(f"gunicorn {workers} sync workers, {clients} client threads, {seconds:.0f} s each, PostgreSQL")
    print(f"bare INSERT+COMMIT route: {b_rps:,.0f} req/s ({b_err} errors)")
    print(f"POST /v1/calls/check: {g_rps:,.0f} req/s ({g_err} errors); p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"ratio check / bare: {g_rps / b_rps:.2f} (target >= 0.7)")
    rt.close()


if __name__ == "__main__":
    main()
