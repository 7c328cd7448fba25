"""Unknown API keys: counted per source and minute, audited in aggregate so floods stay cheap."""

from __future__ import annotations

import logging
from datetime import datetime

from guard.audit.service import SYSTEM_TENANT_ID, append
from guard.context import Caller
from guard.db import transaction
from guard.jobs import register
from guard.runtime import Runtime

log = logging.getLogger(__name__)
PREFIX = "authfail:"


@register("auth.unknown_keys", every=60,
          description="audit unknown-key attempts per source and minute")
def _flush_job(rt: Runtime) -> dict[str, int]:
    return {"events": flush_unknown_keys(rt)}


def _minute(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M")


def count_unknown_key(rt: Runtime, source: str) -> None:
    """Count one unknown-key request; the first one of a new minute flushes closed minutes."""
    minute = _minute(rt.clock.now())
    try:
        first = rt.counters.incr(f"{PREFIX}{minute}|{source}", 7 * 24 * 3600) == 1
        if first:
            flush_unknown_keys(rt)
    except Exception:
        log.exception("could not count an unknown-key request")


def flush_unknown_keys(rt: Runtime) -> int:
    """Write one audit event per (source, closed minute) into the system chain; returns events."""
    current = _minute(rt.clock.now())
    taken = rt.counters.take(PREFIX, lambda key: key[len(PREFIX):].split("|", 1)[0] < current)
    if not taken:
        return 0
    caller = Caller(tenant_id=SYSTEM_TENANT_ID, key_id=None, role=None)
    with transaction(rt.sessions) as session:
        for key in sorted(taken):
            minute, _, source = key[len(PREFIX):].partition("|")
            append(session, caller=caller, action="auth.key.unknown", outcome="deny",
                   clock=rt.clock, reasons=["key_unknown"], policy=rt.policies.base,
                   details={"source": source, "minute": minute, "count": taken[key]})
    return len(taken)
