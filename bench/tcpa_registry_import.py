"""Benchmark: import a synthetic national DNC registry (default 250,000,000 numbers).

Prints the import time, the index bytes per registered number, and the ratio of the import
time to a baseline measured in the same run: reading the same file and counting its lines.
Usage: python bench/tcpa_registry_import.py [N] (TCPA_BENCH_DB=<url>, default a temp SQLite).
The synthetic file (seeded) is written under /tmp and never committed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from guard.clock import SystemClock
from guard.db import make_engine, make_session_factory, transaction
from guard.migrate import upgrade
from guard.tcpa import registry

SEED = 20261123


def area_codes(rng: np.random.Generator, k: int = 300) -> np.ndarray:
    """k distinct NANP-style area codes (first digit 2-9, not N11)."""
    pool = np.array([a for a in range(201, 990) if a % 100 != 11 and a // 10 % 10 != 9])
    return np.sort(rng.choice(pool, size=k, replace=False))


def synth_rows(n: int, seed: int = SEED) -> np.ndarray:
    """n random US numbers over 300 area codes as (n, 11) ASCII rows `NNNNNNNNNN\\n`."""
    rng = np.random.default_rng(seed)
    areas = area_codes(np.random.default_rng(SEED))
    table = np.array([[ord(ch) for ch in str(a)] for a in areas], dtype=np.uint8)
    rows = np.empty((n, 11), dtype=np.uint8)
    rows[:, :3] = table[rng.integers(0, areas.size, size=n)]
    rows[:, 3] = rng.integers(2, 10, size=n, dtype=np.uint8) + 48
    rows[:, 4:10] = rng.integers(0, 10, size=(n, 6), dtype=np.uint8) + 48
    rows[:, 10] = 10
    return rows


def synth_numbers(n: int, seed: int = SEED) -> list[str]:
    """n random numbers as E.164 strings (for scrub benchmarks)."""
    digits = np.ascontiguousarray(synth_rows(n, seed)[:, :10]).tobytes().decode()
    return ["+1" + digits[i * 10:(i + 1) * 10] for i in range(n)]


def write_file(path: Path, n: int) -> None:
    """The registry download format: one 10-digit number per line."""
    step = 10_000_000
    with path.open("wb") as fh:
        for start in range(0, n, step):
            fh.write(synth_rows(min(step, n - start), seed=SEED + 1 + start).tobytes())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 250_000_000
    work = Path(tempfile.mkdtemp(prefix="guard-dnc-bench-"))
    path = work / "national.txt"
    t0 = time.perf_counter()
    write_file(path, n)
    gib = path.stat().st_size / 2**30
    print(f"generated {n:,} numbers ({gib:.2f} GiB) in {time.perf_counter() - t0:.1f} s")
    # Baseline: read the file and count its lines (the floor of any import).
    t0 = time.perf_counter()
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(64 * 2**20):
            lines += chunk.count(b"\n")
    base = time.perf_counter() - t0
    url = os.environ.get("TCPA_BENCH_DB") or f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    t0 = time.perf_counter()
    parsed = registry.parse_file(path, changes=False)
    t_parse = time.perf_counter() - t0
    with transaction(sessions) as s:
        ver = registry.import_registry(s, list_name="national", parsed=parsed, changes=False, tenant_id=None,
                                       file_date=datetime.now(UTC), clock=SystemClock())
        vid, count = ver.id, ver.count
    total = time.perf_counter() - t0
    with transaction(sessions) as s:
        from sqlalchemy import func, select

        from guard.tcpa.models import RegistryBlock

        size = s.execute(select(func.sum(func.length(RegistryBlock.data))).where(
            RegistryBlock.version_id == vid)).scalar_one()
    print(f"baseline read+count lines: {base:.1f} s ({lines:,} lines)")
    print(f"import: {total:.1f} s (parse {t_parse:.1f} s, encode+write {total - t_parse:.1f} s); "
          f"target <= 180 s; ratio to baseline {total / base:.1f}x")
    print(f"distinct numbers {count:,}; index {int(size) / 2**20:.0f} MiB = "
          f"{int(size) / count:.2f} bytes/number (target <= 2.5)")
    engine.dispose()
    path.unlink()


if __name__ == "__main__":
    main()
