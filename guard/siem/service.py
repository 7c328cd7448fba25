"""Forward each tenant's audit events, in seq order, to a SIEM; resume from the acknowledged seq.

Delivery is at-least-once: the cursor advances only after the destination acknowledged a batch,
in a transaction of its own. A crash (or a failed cursor write) between the acknowledgement and
the cursor write sends that batch again after the restart; every line carries the event's `id`,
`tenant_id` and `seq`, so a SIEM can drop the repeats. Nothing is ever skipped.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from guard.audit.models import AuditEvent
from guard.audit.service import SERVED, SYSTEM_TENANT_ID, append, event_to_api, tenants_with_chains
from guard.context import operator
from guard.db import insert_ignore, transaction
from guard.runtime import Runtime
from guard.siem.models import AuditForwardCursor
from guard.siem.transports import Destination, SendError, Transport

log = logging.getLogger(__name__)

_COLS = [getattr(AuditEvent, c) for c in (*SERVED, "hash", "pruned_at")]


class ForwardFailed(Exception):
    """A batch could not be delivered within the allowed attempts (the cursor did not move)."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits up to base * 2**(n-1), capped."""

    base: float = 1.0
    cap: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th consecutive failure."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))


@dataclass
class TenantProgress:
    """What one run forwarded for one tenant."""

    from_seq: int
    to_seq: int
    sent: int = 0
    batches: int = 0
    skipped: str | None = None  # "leased" when another forwarder holds this tenant
    more: bool = False  # stopped at the per-pass batch limit with events still waiting


class Forwarder:
    """Forwards audit events to one destination; `stop` ends it between (or inside) retries."""

    PASS_BATCHES = 20  # batches per tenant per pass of run_forever

    def __init__(
        self,
        rt: Runtime,
        dest: Destination,
        transport: Transport,
        *,
        stop: threading.Event | None = None,
        batch_size: int = 500,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        wait: Callable[[float], bool] | None = None,
        lease_seconds: int = 300,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.rt = rt
        self.dest = dest
        self.transport = transport
        self.stop = stop or threading.Event()
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        # Waiting is injectable so tests never sleep; by default it wakes up on `stop`.
        self.wait = wait or self.stop.wait
        self.lease_seconds = lease_seconds
        self.holder = f"{rt.holder_id}:{uuid.uuid4().hex[:8]}"

    # ------------------------------------------------------------------ cursor and lease

    def _claim(self, tenant_id: str) -> int | None:
        """Take the (destination, tenant) lease; the acknowledged seq, or None if held elsewhere."""
        now = self.rt.clock.now()
        with transaction(self.rt.sessions) as session:
            cur = self._locked(session, tenant_id)
            if cur is None:
                insert_ignore(session, AuditForwardCursor, destination=self.dest.key,
                              tenant_id=tenant_id, seq=0, updated_at=now)
                cur = self._locked(session, tenant_id)
                assert cur is not None
                # A new destination starts receiving this tenant's trail: that is a decision
                # about the tenant's data, recorded in the tenant's own chain.
                policy = self.rt.policies.base if tenant_id == SYSTEM_TENANT_ID \
                    else self.rt.policies_for(session, tenant_id)
                append(session, caller=operator(tenant_id), action="audit.forward.start",
                       outcome="ok", clock=self.rt.clock, policy=policy,
                       details={"destination": self._public_name()})
            if cur.holder not in (None, self.holder) and cur.leased_until is not None \
                    and cur.leased_until > now:
                return None
            cur.holder = self.holder
            cur.leased_until = now + timedelta(seconds=self.lease_seconds)
            return int(cur.seq)

    def _locked(self, session: Session, tenant_id: str) -> AuditForwardCursor | None:
        return session.execute(select(AuditForwardCursor).where(
            AuditForwardCursor.destination == self.dest.key,
            AuditForwardCursor.tenant_id == tenant_id).with_for_update()).scalar_one_or_none()

    def _advance(self, tenant_id: str, seq: int) -> None:
        """Record an acknowledged seq and renew the lease; fails if the lease was lost."""
        now = self.rt.clock.now()
        with transaction(self.rt.sessions) as session:
            cur = self._locked(session, tenant_id)
            if cur is None or cur.holder != self.holder:
                raise ForwardFailed(f"lost the forwarding lease of {tenant_id}")
            if seq > cur.seq:
                cur.seq = seq
            cur.updated_at = now
            cur.leased_until = now + timedelta(seconds=self.lease_seconds)

    def _release(self, tenant_id: str) -> None:
        with transaction(self.rt.sessions) as session:
            cur = self._locked(session, tenant_id)
            if cur is not None and cur.holder == self.holder:
                cur.holder = None
                cur.leased_until = None

    def _public_name(self) -> str:
        # Scheme, host, port and path only: a query string may carry a token.
        return self.dest.key.split("?", 1)[0]

    # ------------------------------------------------------------------ forwarding

    def _read(self, tenant_id: str, after: int) -> list[dict[str, Any]]:
        with transaction(self.rt.sessions) as session:
            rows = session.execute(
                select(*_COLS).where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > after)
                .order_by(AuditEvent.seq).limit(self.batch_size)).all()
            return [event_to_api(r) for r in rows]

    def _send(self, tenant_id: str, events: Sequence[dict[str, Any]]) -> bool:
        """Deliver one batch, retrying with backoff; False if stopped before it was delivered."""
        attempt = 0
        while True:
            try:
                self.transport.send(events)
                return True
            except SendError as exc:
                attempt += 1
                if self.max_attempts is not None and attempt >= self.max_attempts:
                    raise ForwardFailed(
                        f"{self._public_name()}: seq {events[0]['seq']}-{events[-1]['seq']} of "
                        f"{tenant_id} not delivered after {attempt} attempts: {exc}") from None
                delay = self.backoff.delay(attempt)
                log.warning("SIEM %s refused seq %s-%s of %s (%s); retry %d in %.1fs",
                            self._public_name(), events[0]["seq"], events[-1]["seq"], tenant_id,
                            exc, attempt, delay)
                if self.wait(delay) or self.stop.is_set():
                    return False
                # Still ours after the wait? (Renews the lease through a long outage.)
                self._advance(tenant_id, int(events[0]["seq"]) - 1)

    def forward_tenant(self, tenant_id: str, *, max_batches: int | None = None) -> TenantProgress:
        """Send what follows the tenant's cursor, batch by batch, until caught up, stopped or
        `max_batches` were sent."""
        start = self._claim(tenant_id)
        if start is None:
            return TenantProgress(0, 0, skipped="leased")
        progress = TenantProgress(from_seq=start, to_seq=start)
        try:
            while not self.stop.is_set():
                events = self._read(tenant_id, progress.to_seq)
                if not events:
                    break
                if not self._send(tenant_id, events):
                    break
                last = int(events[-1]["seq"])
                self._advance(tenant_id, last)
                progress.to_seq = last
                progress.sent += len(events)
                progress.batches += 1
                if len(events) < self.batch_size:
                    break
                if max_batches is not None and progress.batches >= max_batches:
                    progress.more = True
                    break
        finally:
            try:
                self._release(tenant_id)
            except Exception:  # the lease expires on its own
                log.exception("could not release the forwarding lease of %s", tenant_id)
        return progress

    def tenants(self, only: Sequence[str] | None) -> list[str]:
        """The chains to forward: the given tenant ids, or every chain."""
        if only:
            return list(only)
        with transaction(self.rt.sessions) as session:
            return tenants_with_chains(session)

    def run_once(self, only: Sequence[str] | None = None, *,
                 max_batches: int | None = None) -> dict[str, TenantProgress]:
        """Forward what is there now for every (or the given) tenant, then return."""
        out: dict[str, TenantProgress] = {}
        for tenant_id in self.tenants(only):
            if self.stop.is_set():
                break
            out[tenant_id] = self.forward_tenant(tenant_id, max_batches=max_batches)
        return out

    def run_forever(self, only: Sequence[str] | None = None, *, poll_seconds: float = 5.0) -> int:
        """Keep forwarding new events until `stop` is set; returns how many were sent."""
        sent = 0
        while not self.stop.is_set():
            # Round robin: a tenant with a long backlog does not hold up the others' new events.
            progress = self.run_once(only, max_batches=self.PASS_BATCHES)
            sent += sum(p.sent for p in progress.values())
            if any(p.more for p in progress.values()):
                continue
            if self.stop.wait(poll_seconds):
                break
        return sent

    def close(self) -> None:
        """Close the transport."""
        self.transport.close()
