"""`guard audit forward`: stream audit events to a SIEM as JSON lines (PCI DSS 10.3.3)."""

from __future__ import annotations

import signal
import sys
import threading

import click


@click.command("forward")
@click.option("--to", "url", required=True,
              help="syslog://host:port (TCP), syslog+tls://, syslog+udp:// or https://url")
@click.option("--tenant", default=None, help="tenant name or id, or `system` (default: every chain)")
@click.option("--once", is_flag=True, help="forward what is there now, then exit")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=500, show_default=True)
@click.option("--poll", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="seconds between looks for new events")
@click.option("--max-attempts", type=click.IntRange(1), default=None,
              help="give up on a batch after this many attempts (default: 5 with --once, "
                   "else retry until stopped)")
def forward(url: str, tenant: str | None, once: bool, batch_size: int, poll: float,
            max_attempts: int | None) -> None:
    """Send audit events as JSON lines, resuming after the last acknowledged seq (at-least-once)."""
    from guard.audit.service import SYSTEM_TENANT_ID
    from guard.auth.service import get_tenant
    from guard.cli import _runtime, _unit
    from guard.siem.jobs import forwarder_for
    from guard.siem.service import ForwardFailed

    rt = _runtime()
    only: list[str] | None = None
    if tenant in ("system", SYSTEM_TENANT_ID):
        only = [SYSTEM_TENANT_ID]
    elif tenant:
        with _unit(rt) as session:
            only = [get_tenant(session, tenant).id]
    stop = threading.Event()
    # SIGTERM ends the run cleanly: the batch in flight finishes (or is abandoned in a retry
    # wait, its cursor unmoved), then the process exits 0.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fwd = forwarder_for(rt, url, stop=stop, batch_size=batch_size,
                        max_attempts=max_attempts or (5 if once else None))
    name = fwd.dest.key.split("?", 1)[0]
    try:
        if once:
            progress = fwd.run_once(only)
            for tenant_id, p in sorted(progress.items()):
                state = "leased by another forwarder" if p.skipped else \
                    f"{p.sent} events (seq {p.from_seq + 1 if p.sent else p.from_seq}-{p.to_seq})"
                click.echo(f"{tenant_id}: {state}")
        else:
            click.echo(f"forwarding to {name} (SIGTERM to stop)")
            while not stop.is_set():
                try:
                    sent = fwd.run_forever(only, poll_seconds=poll)
                    click.echo(f"stopped; {sent} events sent")
                except ForwardFailed as exc:
                    click.echo(f"guard: {exc}; trying again", err=True)
                    stop.wait(poll)
    except ForwardFailed as exc:
        click.echo(f"guard: {exc}", err=True)
        sys.exit(1)
    finally:
        fwd.close()
