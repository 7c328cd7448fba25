"""Helpers shared by the benchmarks: throwaway databases, a plain baseline table, a sample event."""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, create_engine, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url

from guard.db import UTCDateTime
from guard.ids import new_id
from guard.migrate import upgrade

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
JSONType = JSON().with_variant(JSONB(), "postgresql")


def pg_admin_url(given: str | None) -> str:
    """The PostgreSQL server to create the throwaway database on (flag, test env, or local)."""
    url = given or os.environ.get("GUARD_TEST_POSTGRES_URL") or DEFAULT_PG
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@contextmanager
def pg_database(admin_url: str, label: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped on the way out whatever happens."""
    name = f"guard_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A fresh, migrated SQLite file in a temp directory (removed on the way out)."""
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        yield url


def baseline_table(metadata: MetaData, name: str = "bench_plain", *, indexed: bool = False) -> Table:
    """A plain table with audit_events' columns (same row size), no chain; optionally its indexes."""
    table = Table(
        name, metadata,
        Column("n", Integer, primary_key=True, autoincrement=True),
        Column("id", String(40), unique=indexed),
        Column("tenant_id", String(40)),
        Column("ts", UTCDateTime),
        Column("key_id", String(40)),
        Column("role", String(32)),
        Column("actor", String(128)),
        Column("action", String(64)),
        Column("outcome", String(16)),
        Column("reasons", JSONType),
        Column("policy_version", String(64)),
        Column("request_id", String(64)),
        Column("subject", String(64)),
        Column("details", JSONType),
        Column("hash", String(64)),
    )
    if indexed:
        # The same secondary indexes audit_events carries, to separate index cost from chain cost.
        Index(f"ix_{name}_ts", table.c.tenant_id, table.c.ts)
        Index(f"ix_{name}_action", table.c.tenant_id, table.c.action, table.c.n)
        Index(f"ix_{name}_subject", table.c.tenant_id, table.c.subject, table.c.n)
        Index(f"ix_{name}_actor", table.c.tenant_id, table.c.actor, table.c.n)
    return table


def sample_row(tenant_id: str, policy_version: str, n: int = 0) -> dict[str, Any]:
    """A row shaped like a typical audit event of a read route (same fields, similar sizes)."""
    return {
        "id": new_id("evt"),
        "tenant_id": tenant_id,
        "ts": datetime.now(UTC),
        "key_id": "key_AbCdEfGhIjKl",
        "role": "auditor",
        "actor": "bench-actor",
        "action": "audit.events.read",
        "outcome": "ok",
        "reasons": [],
        "policy_version": policy_version,
        "request_id": new_id("req"),
        "subject": None,
        "details": {"filters": {}, "returned": n % 2},
        "hash": secrets.token_hex(32),
    }


def fmt_rate(value: float) -> str:
    """A rate with thousands separators."""
    return f"{value:,.0f}"


def gunicorn_exe() -> str:
    """The venv's gunicorn (or the one on PATH)."""
    import sys

    exe = Path(sys.executable).with_name("gunicorn")
    return str(exe) if exe.exists() else "gunicorn"


@contextmanager
def gunicorn_server(args: list[str], env: dict[str, str], log_path: Path, ready_path: str,
                    cwd: Path | None = None) -> Iterator[str]:
    """Run `gunicorn ARGS` bound to 127.0.0.1:0; yield its base URL once `ready_path` answers 200."""
    import signal
    import subprocess

    cmd = [gunicorn_exe(), "-b", "127.0.0.1:0", "--graceful-timeout", "5", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        base = _wait_listening(proc, log_path)
        _wait_ready(base + ready_path, proc)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_listening(proc: Any, log_path: Path) -> str:
    import re
    import time

    deadline = time.monotonic() + 60
    pattern = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
    while time.monotonic() < deadline:
        m = pattern.search(log_path.read_text(errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"gunicorn did not start; its log:\n{log_path.read_text(errors='replace')}")


def _wait_ready(url: str, proc: Any) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered 200")
