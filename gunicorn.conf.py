"""Production gunicorn settings for Guard: `gunicorn -c gunicorn.conf.py`.

Every value can be overridden on the command line or in GUNICORN_CMD_ARGS (e.g.
`GUNICORN_CMD_ARGS="--workers 8"`); Guard's own settings stay in GUARD_* variables (see
docs/operations.md). No GUARD_* variable is invented here: Guard refuses unknown ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

# The app factory: each worker builds its own runtime (engine, keyring) after the fork.
wsgi_app = "guard:create_app()"
preload_app = False

bind = [f"0.0.0.0:{os.environ.get('GUARD_PORT', '8080')}"]


def _cpus() -> int:
    # The CPUs this process may use (a container's cpuset), not the host's count.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Threads cover the time a request waits on PostgreSQL, Redis or a processor; processes give
# CPU parallelism. Each worker holds a SQLAlchemy pool of up to 15 connections, so keep
# workers x 15 x hosts under PostgreSQL's max_connections (or put PgBouncer in between).
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * _cpus() + 1))
threads = 4

# A request that takes longer than this is stuck (a dial-time check answers in milliseconds;
# network calls to processors carry their own shorter timeouts): the worker is replaced.
timeout = 30
graceful_timeout = 30
# Longer than a load balancer's idle timeout (60 s on most), so the balancer closes first and
# never sends a request on a connection gunicorn is closing.
keepalive = 75
# Recycle workers now and then, staggered, so a slow leak never takes every worker at once.
max_requests = 10000
max_requests_jitter = 1000
# Bounds on the request line and headers (the body is bounded by Guard itself).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# Only the proxy in front may set X-Forwarded-*; list its addresses (set GUARD_TRUST_FORWARDED_FOR
# too, so Guard records the client's address from it).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Logs go to stderr, collected by the platform. The access log carries the request id Guard
# returns in X-Request-Id (the one in every application log line and audit event), and the
# path without its query string: queries could carry identifiers that do not belong in logs.
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = (
    'remote=%(h)s method=%(m)s path="%(U)s" status=%(s)s bytes=%(B)s duration_ms=%(M)s '
    'request_id=%({x-request-id}o)s user_agent="%(a)s"'
)

# Prometheus multiprocess mode: every worker writes its counters to files in this directory
# and whichever worker answers /metrics adds them up. It must be empty when gunicorn starts
# (stale files from a previous run would be counted again) and is created here if not given.
_PROM_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _PROM_DIR:
    _PROM_DIR = tempfile.mkdtemp(prefix="guard-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _PROM_DIR
raw_env = [f"PROMETHEUS_MULTIPROC_DIR={_PROM_DIR}"]


def on_starting(server: Any) -> None:
    """Start from an empty metrics directory (the master, once, before any worker)."""
    path = Path(_PROM_DIR)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its live-gauge files so they stop counting (counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _PROM_DIR)
