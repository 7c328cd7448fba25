"""Periodic jobs by name and interval, each run leased in the database so it happens once."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select

from guard.db import insert_ignore, transaction
from guard.models import JobLease
from guard.runtime import Runtime

log = logging.getLogger(__name__)
JobFn = Callable[[Runtime], dict[str, Any]]
F = TypeVar("F", bound=Callable[..., dict[str, Any]])

# Modules that register jobs; domain packages add theirs.
JOB_MODULES = ["guard.audit.jobs", "guard.auth.failures", "guard.auth.verify_jobs", "guard.siem.jobs"]


@dataclass(frozen=True)
class Job:
    """A named periodic job."""

    name: str
    interval_seconds: int
    fn: JobFn
    description: str


JOBS: dict[str, Job] = {}


def register(name: str, *, every: int, description: str) -> Callable[[F], F]:
    """Register `fn` as job `name`, due every `every` seconds."""

    def deco(fn: F) -> F:
        JOBS[name] = Job(name, every, fn, description)
        return fn

    return deco


def load_jobs() -> dict[str, Job]:
    """Import every job module and return the registry."""
    for module in JOB_MODULES:
        importlib.import_module(module)
    return JOBS


def _acquire(rt: Runtime, job: Job, *, force: bool) -> bool:
    now = rt.clock.now()
    ttl = max(60, job.interval_seconds)
    with transaction(rt.sessions) as session:
        lease = session.execute(select(JobLease).where(JobLease.name == job.name)
                                .with_for_update()).scalar_one_or_none()
        if lease is None:
            insert_ignore(session, JobLease, name=job.name)
            lease = session.execute(select(JobLease).where(JobLease.name == job.name)
                                    .with_for_update()).scalar_one()
        if lease.leased_until is not None and lease.leased_until > now and \
                lease.holder != rt.holder_id:
            return False
        due = lease.last_started_at is None or \
            now - lease.last_started_at >= timedelta(seconds=job.interval_seconds)
        if not (due or force):
            return False
        lease.holder = rt.holder_id
        lease.leased_until = now + timedelta(seconds=ttl)
        lease.last_started_at = now
    return True


def _release(rt: Runtime, job: Job, status: str, error: str | None) -> None:
    with transaction(rt.sessions) as session:
        lease = session.get(JobLease, job.name)
        if lease is not None and lease.holder == rt.holder_id:
            lease.leased_until = None
            lease.last_finished_at = rt.clock.now()
            lease.last_status = status
            lease.last_error = error


def run_job(rt: Runtime, name: str, *, force: bool = False) -> dict[str, Any] | None:
    """Run job `name` if due (or `force`d) and not leased elsewhere; None if skipped."""
    job = load_jobs().get(name)
    if job is None:
        raise KeyError(name)
    if not _acquire(rt, job, force=force):
        return None
    try:
        result = job.fn(rt)
    except Exception as exc:
        log.exception("job %s failed", name)
        _release(rt, job, "error", type(exc).__name__)
        raise
    _release(rt, job, "ok", None)
    return result


def worker(rt: Runtime, stop: threading.Event, poll_seconds: float = 5.0) -> None:
    """Run due jobs until `stop` is set (the `guard worker` loop)."""
    jobs = load_jobs()
    while not stop.is_set():
        for name in sorted(jobs):
            if stop.is_set():
                break
            try:
                result = run_job(rt, name)
            except Exception:  # noqa: BLE001, S112 - run_job logged it; the loop keeps going
                continue
            if result is not None:
                log.info("job %s: %s", name, result)
        stop.wait(poll_seconds)
