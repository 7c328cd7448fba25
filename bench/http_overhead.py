"""HTTP overhead of Guard under gunicorn against a bare Flask app, same workers, same load, same run.

For each database (PostgreSQL, then SQLite with WAL and synchronous=FULL) the script makes a
throwaway database, migrates it, creates a tenant and an auditor API key, starts Guard
(`guard:create_app()`) and a bare Flask app (bench/bare_app.py) under gunicorn (2 sync workers,
127.0.0.1, port 0), and drives both with wrk for a fixed duration:

- read:  GET /v1/me (key check, tenant read)            vs  bare GET /json       (target >= 0.6)
- audit: GET /v1/audit/events?limit=1 (writes one event) vs  bare one INSERT + COMMIT of an
         event-sized row                                                          (target >= 0.7)

The four loads run in interleaved rounds (default 2) and the best round of each route counts,
since other load on a shared machine only ever slows a run down. It prints req/s, p50 and p99
(of that round) for every route and each ratio, cleans up and exits 0 (1 if a
run saw errors or non-2xx answers, which would make its figures meaningless).
Needs `wrk` (apt-get install wrk). Run from the repo root: `python bench/http_overhead.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _common import baseline_table, gunicorn_server, pg_admin_url, pg_database, sqlite_database
from sqlalchemy import MetaData

from guard.auth.service import create_key, create_tenant
from guard.clock import SystemClock
from guard.config import Settings
from guard.db import make_engine, transaction
from guard.runtime import build_runtime

BENCH_DIR = Path(__file__).resolve().parent
WORKERS = 2
LUA = r"""
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["X-Guard-Actor"] = "bench-actor"
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p99_us":%.0f,' ..
    '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class Result:
    """One wrk run."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@contextmanager
def gunicorn(app: str, env: dict[str, str], log_path: Path, ready_path: str) -> Iterator[str]:
    """Run `app` under gunicorn on 127.0.0.1:0; yield its base URL; stop it on the way out."""
    with gunicorn_server(["-w", str(WORKERS), "-k", "sync", "--pythonpath", str(BENCH_DIR), app],
                         env, log_path, ready_path) as base:
        yield base


def wrk(name: str, url: str, script: Path, *, duration: int, connections: int,
        token: str | None = None) -> Result:
    """Drive `url` with wrk (1 thread) and parse the figures the Lua script prints."""
    env = {**os.environ, "BENCH_TOKEN": token or ""}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script),
           url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60,
                         check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = int(data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"])
    return Result(name, data["requests"] / (data["duration_us"] / 1e6), data["p50_us"] / 1000,
                  data["p99_us"] / 1000, errors)


def _clean_env() -> dict[str, str]:
    # A stray GUARD_* variable in the caller's shell must not reconfigure the servers.
    return {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "BENCH_"))}


def run_backend(label: str, url: str, args: argparse.Namespace, tmp: Path, script: Path) -> list[Result]:
    """Set up one database, start both servers, run the four loads, return their results."""
    instance = tmp / f"instance-{label}"
    settings = Settings(instance_dir=instance, database_url=url, keyring_path=instance / "guard.keyring")
    rt = build_runtime(settings)
    clock = SystemClock()
    with transaction(rt.sessions) as s:
        tenant = create_tenant(s, "bench", clock=clock)
        _, token = create_key(s, tenant_id=tenant.id, roles=["auditor"],
                              pepper=rt.keyring.current("api_key_pepper").material, clock=clock,
                              label="bench auditor")
        tenant_id = tenant.id
    rt.close()
    engine = make_engine(url)
    metadata = MetaData()
    baseline_table(metadata)
    metadata.create_all(engine)
    engine.dispose()

    guard_env = {**_clean_env(), "GUARD_DATABASE_URL": url, "GUARD_INSTANCE_DIR": str(instance),
                 "GUARD_KEYRING_PATH": str(instance / "guard.keyring")}
    if args.redis_url:
        guard_env |= {"GUARD_REDIS_URL": args.redis_url, "GUARD_REDIS_PREFIX": f"guardbench:{label}:"}
    bare_env = {**_clean_env(), "BENCH_DATABASE_URL": url, "BENCH_TENANT_ID": tenant_id}
    d, c = args.duration, args.connections
    results: list[Result] = []
    with ExitStack() as stack:
        guard_base = stack.enter_context(gunicorn("guard:create_app()", guard_env,
                                                  tmp / f"guard-{label}.log", "/healthz"))
        bare_base = stack.enter_context(gunicorn("bare_app:create_app()", bare_env,
                                                 tmp / f"bare-{label}.log", "/json"))
        runs = [
            ("bare GET /json", bare_base + "/json", None),
            ("guard GET /v1/me", guard_base + "/v1/me", token),
            ("bare INSERT+COMMIT", bare_base + "/insert", None),
            ("guard GET /v1/audit/events?limit=1", guard_base + "/v1/audit/events?limit=1", token),
        ]
        best: dict[str, Result] = {}
        errors: dict[str, int] = {}
        # Interleaved rounds, best of each: other load on a shared machine only ever slows a
        # run down, and the bare and Guard routes get the same chances.
        for r in range(args.rounds):
            for name, target, tok in runs:
                if r == 0:  # warm-up (imports, pools, first policy-version row), not counted
                    wrk(name, target, script, duration=args.warmup, connections=c, token=tok)
                res = wrk(name, target, script, duration=d, connections=c, token=tok)
                print(f"  [{label}] round {r + 1} {name:<38} {res.rps:8,.0f} req/s  "
                      f"p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  errors {res.errors}",
                      flush=True)
                errors[name] = errors.get(name, 0) + res.errors
                if name not in best or res.rps > best[name].rps:
                    best[name] = res
        results = [best[name] for name, _, _ in runs]
        for res in results:
            res.errors = errors[res.name]  # any error in any round voids the figures
    return results


def main() -> int:
    """Run both backends and print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per route")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best is kept)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--postgres-url", default=None,
                        help="server to create the throwaway database on "
                             "(default: GUARD_TEST_POSTGRES_URL or local postgres)")
    parser.add_argument("--redis-url", default=os.environ.get("GUARD_TEST_REDIS_URL"),
                        help="Redis for Guard's shared counters (default: GUARD_TEST_REDIS_URL)")
    parser.add_argument("--backend", choices=("all", "postgresql", "sqlite"), default="all")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    print(f"http_overhead: gunicorn {WORKERS} sync workers, wrk 1 thread x {args.connections} "
          f"connections, {args.duration} s per route x {args.rounds} rounds (best), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    table: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="guard-bench-http-") as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "bench.lua"
        script.write_text(LUA)
        if args.backend in ("all", "postgresql"):
            with pg_database(pg_admin_url(args.postgres_url), "http") as url:
                table["postgresql"] = run_backend("postgresql", url, args, tmp, script)
        if args.backend in ("all", "sqlite"):
            with sqlite_database() as url:
                table["sqlite (WAL, synchronous=FULL)"] = run_backend("sqlite", url, args, tmp, script)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'backend':<32} {'route':<38} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    failed = False
    for backend, results in table.items():
        for r in results:
            print(f"{backend:<32} {r.name:<38} {r.rps:8,.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f}")
            failed |= r.errors > 0
    print()
    for backend, (bare_json, me, bare_insert, audit) in table.items():
        read_ratio = me.rps / bare_json.rps
        write_ratio = audit.rps / bare_insert.rps
        print(f"{backend}: authenticated read /v1/me / bare JSON = {read_ratio:.2f} "
              f"(target >= 0.6: {'met' if read_ratio >= 0.6 else 'MISSED'})")
        print(f"{backend}: audited /v1/audit/events / bare INSERT+COMMIT = {write_ratio:.2f} "
              f"(target >= 0.7: {'met' if write_ratio >= 0.7 else 'MISSED'})")
    if failed:
        print("some runs saw socket errors or non-2xx answers: figures are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
