"""Bounded-time load test of Guard under gunicorn, driven through guard.client.GuardClient.

Makes a throwaway PostgreSQL database (created, migrated, dropped at the end), a tenant with a
dialer, an agent and an auditor key, and starts `gunicorn 'guard:create_app()'` (2 sync workers,
127.0.0.1, a port the kernel picks). Several threads then drive a realistic mix for `--duration`
seconds (default 20), each operation a GuardClient call with retries off so every failure counts:

- dialer:  POST /v1/calls/check       (TCPA/DNC/Reg F decision, audited)
- agent:   POST /v1/cards             (tokenize test card 4242424242424242, varying expiry)
- auditor: GET  /v1/audit/events      (search, itself audited)
- any:     GET  /v1/me

Baseline, same run, same threads and client: GET /healthz (no key, no database) for a quarter
of the duration. Prints throughput, p50/p99 per operation and errors, and the mix's throughput
as a ratio of the baseline. Exits 1 if any call failed. Only loopback is touched.
Run from the repo root: `python bench/load.py [--duration 20] [--threads 4]`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _common import gunicorn_server, pg_admin_url, pg_database

from guard.auth.service import create_key, create_tenant
from guard.client import GuardAPIError, GuardClient, GuardClientError
from guard.clock import SystemClock
from guard.config import Settings
from guard.db import transaction
from guard.runtime import build_runtime

WORKERS = 2
TEST_PAN = "4242424242424242"  # Stripe/Visa test number: never a real card
AREA_CODES = (212, 415, 312, 617, 305, 206)
# Operation weights of the mix: dialers check far more often than agents take cards.
MIX = {"calls.check": 45, "cards.tokenize": 20, "audit.events": 15, "me": 20}


@dataclass
class Stats:
    """Latencies (seconds) and errors per operation, merged from every thread."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def merge(self, lat: dict[str, list[float]], errors: Counter[str]) -> None:
        with self.lock:
            for op, xs in lat.items():
                self.latencies.setdefault(op, []).extend(xs)
            self.errors.update(errors)


def _pct(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) in milliseconds."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] * 1000


@contextmanager
def gunicorn(env: dict[str, str], tmp: Path) -> Iterator[str]:
    """Guard under gunicorn on 127.0.0.1 (port 0); yield its base URL; stop it on the way out."""
    conf = tmp / "empty.conf.py"  # an explicit empty config: never the production one's bind
    conf.write_text("")
    with gunicorn_server(["-c", str(conf), "-w", str(WORKERS), "-k", "sync", "guard:create_app()"],
                         env, tmp / "gunicorn.log", "/readyz", cwd=tmp) as base:
        yield base


def _operations(base: str, keys: dict[str, str], rng: random.Random) -> tuple[
        dict[str, Callable[[], object]], list[GuardClient]]:
    """One thread's clients (one per role) and the calls of the mix."""
    def client(role: str) -> GuardClient:
        return GuardClient(base, keys[role], actor=f"bench-{role}", retries=0, timeout=30)

    dialer, agent, auditor = client("dialer"), client("agent"), client("auditor")
    year = datetime.now(UTC).year

    def check() -> object:
        phone = f"+1{rng.choice(AREA_CODES)}55501{rng.randrange(100):02d}"
        return dialer.check_call(phone=phone, purpose=rng.choice(("informational", "telemarketing")),
                                 method="manual", campaign="bench")

    def tokenize() -> object:
        return agent.tokenize_card(number=TEST_PAN, exp_month=rng.randint(1, 12),
                                   exp_year=year + rng.randint(1, 5))

    def events() -> object:
        action = rng.choice(("tcpa.call.check", "pci.card.*", None))
        return auditor.list_events(action=action, limit=20)

    ops: dict[str, Callable[[], object]] = {
        "calls.check": check, "cards.tokenize": tokenize, "audit.events": events,
        "me": lambda: rng.choice((dialer, agent, auditor)).me(),
    }
    return ops, [dialer, agent, auditor]


def drive(base: str, keys: dict[str, str], *, threads: int, seconds: float, seed: int,
          baseline: bool) -> tuple[Stats, float]:
    """Run `threads` threads for `seconds`; return their stats and the wall time."""
    stats = Stats()
    start_gate = threading.Barrier(threads + 1)
    deadline_box: list[float] = []

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        if baseline:
            gc = GuardClient(base, "none", retries=0, timeout=30)
            ops: dict[str, Callable[[], object]] = {"healthz": gc.health}
            clients = [gc]
        else:
            ops, clients = _operations(base, keys, rng)
        names, weights = list(ops), [MIX.get(n, 1) for n in ops]
        lat: dict[str, list[float]] = {n: [] for n in names}
        errors: Counter[str] = Counter()
        start_gate.wait()
        deadline = deadline_box[0]
        try:
            while time.monotonic() < deadline:
                op = rng.choices(names, weights)[0]
                t0 = time.perf_counter()
                try:
                    ops[op]()
                except GuardAPIError as exc:
                    errors[f"{op}: {exc.status} {exc.code}"] += 1
                    continue
                except GuardClientError as exc:
                    errors[f"{op}: {type(exc).__name__}"] += 1
                    continue
                lat[op].append(time.perf_counter() - t0)
        finally:
            for gc in clients:
                gc.close()
            stats.merge(lat, errors)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    deadline_box.append(time.monotonic() + seconds)
    t0 = time.monotonic()
    start_gate.wait()
    for t in pool:
        t.join(timeout=seconds + 60)  # each call has a 30 s timeout: the run always ends
    return stats, time.monotonic() - t0


def setup_tenant(url: str, instance: Path) -> dict[str, str]:
    """A tenant with one key per role the mix uses; returns role -> key text."""
    settings = Settings(instance_dir=instance, database_url=url, keyring_path=instance / "guard.keyring")
    rt = build_runtime(settings)
    clock = SystemClock()
    keys: dict[str, str] = {}
    with transaction(rt.sessions) as s:
        tenant = create_tenant(s, "bench-load", clock=clock)
        for role in ("dialer", "agent", "auditor"):
            _, token = create_key(s, tenant_id=tenant.id, roles=[role],
                                  pepper=rt.keyring.current("api_key_pepper").material, clock=clock,
                                  label=f"bench {role}")
            keys[role] = token
    rt.close()
    return keys


def report(title: str, stats: Stats, wall: float) -> float:
    """Print one phase's table; return its total throughput."""
    total = sum(len(x) for x in stats.latencies.values())
    rate = total / wall if wall else 0.0
    print(f"\n{title}: {total:,} calls in {wall:.1f} s = {rate:,.0f} calls/s")
    print(f"  {'operation':<16} {'calls':>8} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for op, xs in sorted(stats.latencies.items()):
        mean = statistics.fmean(xs) * 1000 if xs else float("nan")
        print(f"  {op:<16} {len(xs):>8,} {len(xs) / wall:>8,.0f} {_pct(xs, 50):>8.2f} "
              f"{_pct(xs, 99):>8.2f} {mean:>8.2f}")
    print(f"  errors: {sum(stats.errors.values())}")
    for what, n in stats.errors.most_common():
        print(f"    {n:>6} x {what}")
    return rate


def main() -> int:
    """Set up, run the baseline and the mix, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of mixed load")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--seed", type=int, default=8, help="seed of the operation mix")
    parser.add_argument("--postgres-url", default=None,
                        help="server for the throwaway database (default: GUARD_TEST_POSTGRES_URL "
                             "or local postgres)")
    parser.add_argument("--redis-url", default=os.environ.get("GUARD_TEST_REDIS_URL"),
                        help="Redis for Guard's shared counters (default: GUARD_TEST_REDIS_URL)")
    args = parser.parse_args()
    if args.duration <= 0 or args.threads < 1:
        parser.error("--duration must be > 0 and --threads >= 1")
    warmup = min(2.0, args.duration / 10)
    base_secs = max(1.0, args.duration / 4)
    print(f"load: gunicorn {WORKERS} sync workers on PostgreSQL, {args.threads} GuardClient threads, "
          f"{args.duration:g} s mix (+{warmup:g} s warm-up, {base_secs:g} s /healthz baseline), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="guard-bench-load-") as tmpdir, \
            pg_database(pg_admin_url(args.postgres_url), "load") as url:
        tmp = Path(tmpdir)
        instance = tmp / "instance"
        keys = setup_tenant(url, instance)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "BENCH_"))}
        env |= {"GUARD_DATABASE_URL": url, "GUARD_INSTANCE_DIR": str(instance),
                "GUARD_KEYRING_PATH": str(instance / "guard.keyring")}
        if args.redis_url:
            env |= {"GUARD_REDIS_URL": args.redis_url, "GUARD_REDIS_PREFIX": f"guardload:{os.getpid()}:"}
        with gunicorn(env, tmp) as base:
            w_stats, _ = drive(base, keys, threads=args.threads, seconds=warmup, seed=args.seed + 1,
                               baseline=False)
            b_stats, b_wall = drive(base, keys, threads=args.threads, seconds=base_secs,
                                    seed=args.seed, baseline=True)
            m_stats, m_wall = drive(base, keys, threads=args.threads, seconds=args.duration,
                                    seed=args.seed, baseline=False)
    b_rate = report("baseline GET /healthz (no key, no database)", b_stats, b_wall)
    m_rate = report("mix (calls/check, cards tokenize, audit events, /v1/me)", m_stats, m_wall)
    print(f"\nmix throughput / /healthz baseline = {m_rate / b_rate:.2f}" if b_rate else "")
    errors = sum(m_stats.errors.values()) + sum(b_stats.errors.values()) + sum(w_stats.errors.values())
    if errors:
        print(f"{errors} calls failed: the figures are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
