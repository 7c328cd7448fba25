"""Housekeeping of the database counter store (Redis expires its own keys)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_
from sqlalchemy.engine import CursorResult

from guard.auth.verify_models import LimitEvent, LimitState
from guard.db import transaction
from guard.jobs import register
from guard.runtime import Runtime

# Longer than any window the identity policy allows (customer_window_hours <= 72).
KEEP = timedelta(hours=72)


@register("identity.limits.prune", every=3600,
          description="drop identity counter rows older than every limit window")
def _prune_job(rt: Runtime) -> dict[str, int]:
    return prune_limits(rt)


def prune_limits(rt: Runtime) -> dict[str, int]:
    """Delete window members past every window, and idle state rows with nothing to remember.

    Consecutive-failure counts are kept however old: NIST SP 800-63B 5.2.2 counts them until a
    success or a reset, not per period.
    """
    cutoff = rt.clock.now() - KEEP
    with transaction(rt.sessions) as session:
        events = session.execute(delete(LimitEvent).where(LimitEvent.at < cutoff))
        states = session.execute(delete(LimitState).where(
            LimitState.consecutive == 0,
            or_(LimitState.blocked_until.is_(None), LimitState.blocked_until < cutoff)))
        assert isinstance(events, CursorResult) and isinstance(states, CursorResult)
        return {"events": events.rowcount, "states": states.rowcount}
