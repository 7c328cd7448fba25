"""Prometheus metrics: decisions, request latency, and gauges read from the database per scrape.

Counters and histograms live in the process (in gunicorn's multiprocess mode, in files under
PROMETHEUS_MULTIPROC_DIR that every worker writes and any worker aggregates when scraped).
Gauges that describe shared state (chain lengths, checkpoint age, job runs, a domain's registry
age) are read from the database at scrape time, so every instance reports the same truth and
nothing has to be kept up to date in memory. Domains add such gauges with `gauge(...)` in a
module listed in GAUGE_MODULES.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, SessionTransaction

if TYPE_CHECKING:
    from flask import Flask, Response

    from guard.audit.service import PendingEvent
    from guard.runtime import Runtime

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Modules that register gauges with `gauge(...)` (like guard.jobs.JOB_MODULES); domain
# packages add theirs, e.g. the outbound domain's Do-Not-Call registry age.
GAUGE_MODULES: list[str] = []

# ----------------------------------------------------------------------------- sealed events

SealObserver = Callable[[Session, "Sequence[PendingEvent]"], None]
# Called by guard.audit.service.seal_pending with the events it just chained, in the
# transaction that is about to commit.
SEAL_OBSERVERS: list[SealObserver] = []


def notify_sealed(session: Session, events: Sequence[PendingEvent]) -> None:
    """Tell every observer about events just chained; an observer's failure never blocks an append."""
    for observer in list(SEAL_OBSERVERS):
        try:
            observer(session, events)
        except Exception:  # metrics must never cost an audit event
            log.exception("audit seal observer %r failed", observer)


_SEALED = "guard_metrics_sealed"


def _stash_sealed(session: Session, events: Sequence[PendingEvent]) -> None:
    # Counted when the transaction commits: a sealed event whose commit fails never happened.
    session.info.setdefault(_SEALED, []).extend(
        (ev.action, ev.outcome, tuple(ev.reasons)) for ev in events)


def _count_committed(session: Session) -> None:
    sealed = session.info.pop(_SEALED, None)
    if not sealed:
        return
    inst = instruments()
    for action, outcome, reasons in sealed:
        inst.decisions.labels(action, outcome).inc()
        for reason in reasons:
            inst.reasons.labels(action, outcome, reason).inc()


def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    # Runs after _count_committed on a commit; after a rollback or close it drops what was
    # sealed but never committed. Savepoints (nested transactions) end without effect.
    if transaction.parent is None:
        session.info.pop(_SEALED, None)


def _install_decision_counter() -> None:
    if _stash_sealed not in SEAL_OBSERVERS:
        SEAL_OBSERVERS.append(_stash_sealed)
    if not event.contains(Session, "after_commit", _count_committed):
        event.listen(Session, "after_commit", _count_committed)
        event.listen(Session, "after_transaction_end", _forget_uncommitted)


# ----------------------------------------------------------------------------- instruments


@dataclass(frozen=True)
class Instruments:
    """The process's counters and histograms (one set per process, created on first use)."""

    decisions: Counter
    reasons: Counter
    latency: Histogram


# Request latency buckets: Guard answers at dial time, so the interesting range is 5 ms - 2 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@cache
def instruments() -> Instruments:
    """Create the instruments once per process (never at import: the multiprocess mode is
    chosen by PROMETHEUS_MULTIPROC_DIR, which gunicorn.conf.py sets before workers start)."""
    return Instruments(
        decisions=Counter("guard_decisions", "Audit events committed, by action and outcome",
                          ["action", "outcome"]),
        reasons=Counter("guard_decision_reasons",
                        "Reason codes of committed audit events (an event counts once per reason)",
                        ["action", "outcome", "reason"]),
        latency=Histogram("guard_http_request_duration_seconds",
                          "Time to answer a request (until the response headers; streams excluded)",
                          ["method", "route", "status"], buckets=LATENCY_BUCKETS),
    )


def multiprocess_dir() -> str | None:
    """The multiprocess directory when serving under gunicorn with several workers."""
    return os.environ.get(MULTIPROC_ENV) or None


# ----------------------------------------------------------------------------- database gauges

Sample = tuple[Sequence[str], float]
GaugeFn = Callable[["Runtime", Session, "str | None"], Iterable[Sample]]


@dataclass(frozen=True)
class GaugeSpec:
    """A gauge computed at scrape time; `fn(rt, session, tenant)` yields (label values, value).

    `tenant` is the caller's tenant when the scrape is made with a tenant's key (the function
    must then report that tenant only) or None for a trusted, network-restricted scrape.
    """

    name: str
    documentation: str
    labels: tuple[str, ...]
    fn: GaugeFn


GAUGES: dict[str, GaugeSpec] = {}


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Callable[[GaugeFn], GaugeFn]:
    """Register `fn` as the scrape-time gauge `name` (labels named `tenant` are tenant-filtered)."""

    def deco(fn: GaugeFn) -> GaugeFn:
        GAUGES[name] = GaugeSpec(name, documentation, tuple(labels), fn)
        return fn

    return deco


def load_gauges() -> dict[str, GaugeSpec]:
    """Import every gauge module and return the registry."""
    for module in GAUGE_MODULES:
        importlib.import_module(module)
    return GAUGES


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


@gauge("guard_audit_chain_length", "Events in the tenant's audit hash chain (its head seq)", ["tenant"])
def _chain_length(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.audit.models import AuditHead

    stmt = select(AuditHead.tenant_id, AuditHead.seq)
    if tenant is not None:
        stmt = stmt.where(AuditHead.tenant_id == tenant)
    for tenant_id, seq in session.execute(stmt):
        yield (tenant_id,), float(seq)


@gauge("guard_audit_chain_verified_seq",
       "Highest seq the audit.verify job (or an auditor) has verified", ["tenant"])
def _chain_verified(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.audit.models import AuditWatermark

    stmt = select(AuditWatermark.tenant_id, AuditWatermark.seq)
    if tenant is not None:
        stmt = stmt.where(AuditWatermark.tenant_id == tenant)
    for tenant_id, seq in session.execute(stmt):
        yield (tenant_id,), float(seq)


@gauge("guard_audit_chain_broken",
       "1 when the latest verification of the tenant's chain (job or API) found it broken", ["tenant"])
def _chain_broken(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.audit.models import AuditEvent, AuditHead

    tenants = [tenant] if tenant is not None else list(
        session.execute(select(AuditHead.tenant_id)).scalars())
    for tenant_id in tenants:
        # One index range scan per tenant (tenant_id, action, seq): cheap at any chain length.
        outcome = session.execute(
            select(AuditEvent.outcome)
            .where(AuditEvent.tenant_id == tenant_id, AuditEvent.action == "audit.verify",
                   AuditEvent.outcome.in_(("ok", "error")))
            .order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none()
        yield (tenant_id,), 1.0 if outcome == "error" else 0.0


@gauge("guard_audit_checkpoint_age_seconds",
       "Seconds since the tenant's last signed checkpoint (absent before the first one)", ["tenant"])
def _checkpoint_age(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.audit.models import AuditCheckpoint as table_model

    table = table_model.__table__
    stmt = select(table.c.tenant_id, func.max(table.c.created_at)).group_by(table.c.tenant_id)
    if tenant is not None:
        stmt = stmt.where(table.c.tenant_id == tenant)
    now = rt.clock.now()
    for tenant_id, created in session.execute(stmt):
        age = _age(now, created)
        if age is not None:
            yield (tenant_id,), age


@gauge("guard_job_last_finished_age_seconds", "Seconds since each periodic job last finished", ["job"])
def _job_age(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.models import JobLease

    now = rt.clock.now()
    for name, finished in session.execute(select(JobLease.name, JobLease.last_finished_at)):
        age = _age(now, finished)
        if age is not None:
            yield (name,), age


@gauge("guard_job_last_run_ok", "1 when each periodic job's last run succeeded, 0 when it failed", ["job"])
def _job_ok(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.models import JobLease

    for name, status in session.execute(select(JobLease.name, JobLease.last_status)):
        if status is not None:
            yield (name,), 1.0 if status == "ok" else 0.0


@gauge("guard_job_interval_seconds", "Each registered job's interval (for staleness alerts)", ["job"])
def _job_interval(rt: Runtime, session: Session, tenant: str | None) -> Iterator[Sample]:
    from guard.jobs import load_jobs

    for job in load_jobs().values():
        yield (job.name,), float(job.interval_seconds)


class DatabaseCollector(Collector):
    """Runs every registered gauge in one short read transaction per scrape."""

    def __init__(self, rt: Runtime, tenant: str | None) -> None:
        self.rt = rt
        self.tenant = tenant

    def collect(self) -> Iterator[Metric]:
        """Yield each gauge; one that fails is reported in guard_metrics_gauge_up, not raised."""
        up = GaugeMetricFamily("guard_metrics_gauge_up",
                               "1 when a scrape-time gauge could be read, 0 when it failed",
                               labels=["gauge"])
        specs = sorted(load_gauges().values(), key=lambda s: s.name)
        session = self.rt.sessions()
        try:
            try:
                session.connection()  # begin, so each gauge runs in a savepoint of its own
            except Exception:  # an unreachable database is reported, not raised
                log.exception("metrics: database unreachable")
                for spec in specs:
                    up.add_metric([spec.name], 0.0)
                yield up
                return
            for spec in specs:
                family = GaugeMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))
                try:
                    # A failed query aborts a PostgreSQL transaction: the savepoint keeps the
                    # other gauges readable.
                    with session.begin_nested():
                        samples = list(spec.fn(self.rt, session, self.tenant))
                except Exception:  # one gauge must not hide the others
                    log.exception("metrics gauge %s failed", spec.name)
                    up.add_metric([spec.name], 0.0)
                    continue
                for labels, value in samples:
                    values = [str(v) for v in labels]
                    if "tenant" in spec.labels and self.tenant is not None \
                            and values[spec.labels.index("tenant")] != self.tenant:
                        continue  # a tenant's key never sees another tenant's series
                    family.add_metric(values, value)
                up.add_metric([spec.name], 1.0)
                yield family
        finally:
            session.rollback()
            session.close()
        yield up


# ----------------------------------------------------------------------------- exposition


def render(rt: Runtime, *, tenant: str | None) -> bytes:
    """The text exposition: process (or all workers') instruments, then the database gauges."""
    instruments()
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        head = generate_latest(registry)
    else:
        head = generate_latest(REGISTRY)
    db = CollectorRegistry(auto_describe=False)
    db.register(DatabaseCollector(rt, tenant))
    return head + generate_latest(db)


def install(app: Flask) -> None:
    """Count committed audit events and time every request of `app`."""
    from flask import g, request

    inst = instruments()
    _install_decision_counter()
    load_gauges()

    def start_timer() -> None:
        g.guard_metrics_start = time.perf_counter()

    def observe(resp: Response) -> Response:
        started = g.pop("guard_metrics_start", None)
        if started is not None:
            # The route template, never the path: ids in paths would explode the series count.
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            inst.latency.labels(request.method, route, str(resp.status_code)).observe(
                time.perf_counter() - started)
        return resp

    # First of all before-request hooks: authentication may refuse the request, and the
    # refusal's latency counts too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)
    app.after_request(observe)
