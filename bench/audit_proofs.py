"""Verifiable-log benchmarks: inclusion/consistency proofs at 10,000,000 events, and export.

1. N events (default 10,000,000) are built, chained and COPYed into a throwaway PostgreSQL
   database with the same bulk builder as bench/audit.py; `verify` must accept them, then the
   Merkle nodes are stored (`extend_tree`) and a checkpoint is signed. Inclusion and consistency
   proofs for random positions are generated through the service and verified with the RFC 9162
   algorithms; the baseline is reading one event by primary key, in the same run.
2. Export: ranges of growing size (up to 1,000,000) are streamed through the same code as GET /v1/audit/export
   (`iter_events` + `render`) into a null sink; events/s and the peak Python memory of each
   range show the memory stays flat as the range grows. The baseline is fetching the same rows'
   same rows into Python without serializing them.

Run: python bench/audit_proofs.py [--events N] [--proofs K]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import fmt_rate, pg_admin_url, pg_database
from audit import load_events
from sqlalchemy import select

from guard.audit import merkle, proofs, service
from guard.audit.models import AuditEvent
from guard.auth.service import create_tenant
from guard.clock import SystemClock
from guard.db import make_engine, make_session_factory, transaction
from guard.keyring import Keyring


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def main() -> int:
    """Seed, prove, export; print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--proofs", type=int, default=200, help="random proofs to generate and check")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    n = args.events
    rng = random.Random(1234)
    print(f"audit proofs bench: {n:,} events, {args.proofs} proofs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    clock = SystemClock()
    with pg_database(pg_admin_url(args.postgres_url), "proofs") as url:
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        with transaction(sessions) as s:
            tenant_id = create_tenant(s, "bench", clock=clock).id
        print(f"  seeded in {load_events(url, tenant_id, n):.1f} s", flush=True)
        t0 = time.monotonic()
        with transaction(sessions) as s:
            res = service.verify(s, tenant_id, clock=clock, full=True)
        if not (res.ok and res.checked == n):
            raise SystemExit(f"the normal verifier refused the seeded chain: {res}")
        print(f"  verified in {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        with transaction(sessions) as s:
            proofs.extend_tree(s, tenant_id, n)
        build_s = time.monotonic() - t0
        print(f"  Merkle nodes stored in {build_s:.1f} s", flush=True)
        keyring = Keyring(Path(tempfile.gettempdir()) / f"bench-{os.getpid()}.keyring")
        with transaction(sessions) as s:
            cp = proofs.create_checkpoint(s, tenant_id, keyring=keyring, clock=clock, verified_through=n)
        root = bytes.fromhex(cp.root_hash)

        # Baseline: one event by primary key.
        base = []
        for _ in range(args.proofs):
            seq = rng.randint(1, n)
            t = time.perf_counter()
            with transaction(sessions) as s:
                s.execute(select(AuditEvent.hash).where(AuditEvent.tenant_id == tenant_id,
                                                        AuditEvent.seq == seq)).scalar_one()
            base.append(time.perf_counter() - t)
        gen, check = [], []
        for _ in range(args.proofs):
            seq = rng.randint(1, n)
            t = time.perf_counter()
            with transaction(sessions) as s:
                p = proofs.inclusion(s, tenant_id, seq, n)
            gen.append(time.perf_counter() - t)
            leaf = merkle.leaf_hash(bytes.fromhex(p["event_hash"]))
            path = [bytes.fromhex(h) for h in p["path"]]
            t = time.perf_counter()
            ok = merkle.verify_inclusion(seq - 1, n, leaf, path, root)
            check.append(time.perf_counter() - t)
            if not ok:
                raise SystemExit(f"inclusion proof of {seq} does not verify")
        cons = []
        for _ in range(max(10, args.proofs // 10)):
            m = rng.randint(1, n - 1)
            t = time.perf_counter()
            with transaction(sessions) as s:
                c = proofs.consistency(s, tenant_id, m, n)
            cons.append(time.perf_counter() - t)
            if not merkle.verify_consistency(m, n, bytes.fromhex(c["from_root"]), root,
                                             [bytes.fromhex(h) for h in c["proof"]]):
                raise SystemExit(f"consistency proof {m}->{n} does not verify")

        # Export: growing ranges, constant memory.
        export_rows = []
        cols = [getattr(AuditEvent, c) for c in (*service.SERVED, "hash", "pruned_at")]
        for size in [s for s in (10_000, 100_000, 1_000_000) if s <= n]:
            a = n - size + 1
            with transaction(sessions) as s:
                header = proofs.export_header(s, tenant_id, cp, a, n, "bench")
            t = time.perf_counter()
            count = 0
            with transaction(sessions) as s:
                for chunk in proofs.render(header, proofs.iter_events(s, tenant_id, a, n), "jsonl"):
                    count += chunk.count("\n")
            el = time.perf_counter() - t
            # The process's peak resident size so far: flat across sizes means constant memory.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            t = time.perf_counter()
            with transaction(sessions) as s:
                last = a - 1
                while True:
                    rows = s.execute(select(*cols).where(
                        AuditEvent.tenant_id == tenant_id, AuditEvent.seq > last, AuditEvent.seq <= n)
                        .order_by(AuditEvent.seq).limit(20_000)).all()
                    if not rows:
                        break
                    last = rows[-1].seq
            fetch = time.perf_counter() - t
            export_rows.append((size, count - 1, el, peak, fetch))
        engine.dispose()
        os.unlink(keyring.path)

    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print(f"Merkle nodes for {n:,} events stored in {build_s:.1f} s")
    print(f"inclusion proof generation at {n:,} events: {_ms(gen)} "
          f"(baseline: one event by primary key {_ms(base)}; ratio of medians "
          f"{statistics.median(gen) / statistics.median(base):.1f}x)")
    print(f"inclusion proof verification: median {statistics.median(check) * 1e6:.1f} µs "
          f"({len(p['path'])} hashes)")
    print(f"consistency proof generation: {_ms(cons)}")
    for size, count, el, peak, fetch in export_rows:
        print(f"export of {size:,} events: {fmt_rate(count / el)} events/s, peak RSS "
              f"{peak / 1e6:.1f} MB (baseline fetching the same rows, unserialized: "
              f"{fmt_rate(size / fetch)}/s; ratio {(count / el) / (size / fetch):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
