"""Tokenize throughput over HTTP (gunicorn) against a bare INSERT + COMMIT Flask route, same run.

Both apps run under the same gunicorn config against the same PostgreSQL server; the load is
the same client processes. Prints req/s of each and the ratio (target >= 0.6).
Run: GUARD_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
     .venv/bin/python bench/vault_tokenize.py
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
# Each tenant has its own audit chain (one head lock per tenant): 1 tenant is the worst case.
TENANTS = int(os.environ.get("BENCH_TENANTS", "1"))


def luhn_complete(body: str) -> str:
    """`body` plus its Luhn check digit."""
    for d in "0123456789":
        digits = body + d
        total = 0
        for i, ch in enumerate(reversed(digits)):
            n = int(ch) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return digits
    raise AssertionError


def free_port() -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(port: int, path: str, headers: list[dict[str, str]], seed: int, deadline: float,
           q: mp.Queue) -> None:
    """Send requests back to back until the deadline; report successes."""
    rng = random.Random(seed)
    ok = 0
    statuses: dict[int, int] = {}
    while time.time() < deadline:
        pan = luhn_complete("424242" + "".join(str(rng.randrange(10)) for _ in range(9)))
        body = json.dumps({"number": pan, "exp_month": 12, "exp_year": 2030})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", path, body, {"Content-Type": "application/json",
                                          **headers[seed % len(headers)]})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        if resp.status in (200, 201):
            ok += 1
    q.put((ok, statuses))


def serve(app: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start gunicorn with the shared config; wait until it answers."""
    port = free_port()
    proc = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
                             "--log-level", "warning", app], env=env, cwd=ROOT)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{app} did not start")


def load(port: int, path: str, headers: list[dict[str, str]], seconds: float = SECONDS) -> float:
    """Requests per second over `seconds` from CLIENTS processes."""
    q: mp.Queue = mp.Queue()
    deadline = time.time() + seconds
    procs = [mp.Process(target=client, args=(port, path, headers, i, deadline, q)) for i in range(CLIENTS)]
    for p in procs:
        p.start()
    total = 0
    statuses: dict[int, int] = {}
    for _ in procs:
        ok, st = q.get()
        total += ok
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    for p in procs:
        p.join()
    if set(statuses) - {200, 201}:
        print(f"  {path}: statuses {statuses}")
    return total / seconds


def measure(port: int, path: str, headers: list[dict[str, str]]) -> float:
    """Warm every worker up (imports, pools, caches), then measure."""
    load(port, path, headers, seconds=3)
    return load(port, path, headers)


def main() -> None:
    """Create a database, serve each app under the same gunicorn config, load both."""
    admin = os.environ.get("GUARD_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"guard_bench_{uuid.uuid4().hex[:8]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        from guard.auth.service import create_key, create_tenant
        from guard.config import Settings
        from guard.db import transaction
        from guard.migrate import upgrade
        from guard.runtime import build_runtime

        upgrade(url)
        instance = tempfile.mkdtemp()
        rt = build_runtime(Settings(instance_dir=Path(instance), database_url=url))
        keys: list[dict[str, str]] = []
        with transaction(rt.sessions) as s:
            for i in range(TENANTS):
                tenant = create_tenant(s, f"bench{i}", clock=rt.clock)
                _, token = create_key(s, tenant_id=tenant.id, roles=["agent"],
                                      pepper=rt.keyring.current("api_key_pepper").material,
                                      clock=rt.clock, environment="test")
                keys.append({"Authorization": f"Bearer {token}", "X-Guard-Actor": "bench"})
            s.execute(text("CREATE TABLE bench_rows (id varchar(40) primary key, payload text)"))
        rt.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
        env.update({"GUARD_DATABASE_URL": url, "GUARD_INSTANCE_DIR": instance, "GUARD_LOG_LEVEL": "WARNING",
                    "PYTHONPATH": str(ROOT)})
        proc, port = serve("bench.bare_insert_app:app", env)
        try:
            base = measure(port, "/insert", [{}])
        finally:
            proc.terminate()
            proc.wait()
        proc, port = serve("guard:create_app()", env)
        try:
            guard = measure(port, "/v1/cards", keys)
        finally:
            proc.terminate()
            proc.wait()
        print(f"gunicorn -w {WORKERS}, {CLIENTS} client processes, {SECONDS:.0f} s each, PostgreSQL, "
              f"{TENANTS} tenant(s)")
        print(f"baseline INSERT+COMMIT route: {base:.0f} req/s")
        print(f"POST /v1/cards (tokenize):    {guard:.0f} req/s")
        print(f"ratio tokenize/baseline = {guard / base:.2f} (target >= 0.6)")
    finally:
        with eng.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
