"""The `siem.forward` job: forward new audit events to every GUARD_SIEM_URL destination."""

from __future__ import annotations

import logging
from typing import Any

from guard.errors import ConfigError
from guard.jobs import register
from guard.runtime import Runtime
from guard.siem.service import Backoff, Forwarder, ForwardFailed
from guard.siem.transports import make_transport, parse_destination

log = logging.getLogger(__name__)


def destinations(rt: Runtime) -> list[str]:
    """The configured destination URLs (GUARD_SIEM_URL, comma-separated)."""
    return [u.strip() for u in rt.settings.siem_url.split(",") if u.strip()]


def forwarder_for(rt: Runtime, url: str, **kwargs: Any) -> Forwarder:
    """A Forwarder for `url` with the configured credentials and CA."""
    dest = parse_destination(url)
    auth = rt.settings.siem_authorization
    transport = make_transport(dest, authorization=auth.get_secret_value() if auth else None,
                               ca_file=rt.settings.siem_ca_file)
    return Forwarder(rt, dest, transport, **kwargs)


@register("siem.forward", every=60, description="forward new audit events to GUARD_SIEM_URL")
def forward_all(rt: Runtime, *, backoff: Backoff | None = None) -> dict[str, Any]:
    """One pass per destination; a destination that keeps failing fails the job (and alerts)."""
    urls = destinations(rt)
    if not urls:
        return {"skipped": "GUARD_SIEM_URL is not set"}
    out: dict[str, Any] = {}
    failed: list[str] = []
    for url in urls:
        try:
            fwd = forwarder_for(rt, url, max_attempts=3, backoff=backoff or Backoff(base=1.0, cap=5.0))
        except ConfigError as exc:
            log.error("GUARD_SIEM_URL: %s", exc)
            failed.append(str(exc))
            continue
        try:
            progress = fwd.run_once()
            out[fwd.dest.key.split("?", 1)[0]] = {
                "sent": sum(p.sent for p in progress.values()),
                "leased_elsewhere": sorted(t for t, p in progress.items() if p.skipped)}
        except ForwardFailed as exc:
            log.error("SIEM forwarding failed: %s", exc)
            failed.append(str(exc))
        finally:
            fwd.close()
    if failed:
        # The lease records the job as failed, so guard_job_last_run_ok alerts the operator.
        raise ForwardFailed("; ".join(failed))
    return out
