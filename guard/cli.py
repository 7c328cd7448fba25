"""`guard ...` operator commands: serve, db, tenants, keys, audit, worker, jobs, demo."""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from guard.errors import ConfigError, GuardError

F = TypeVar("F", bound=Callable[..., Any])


def _runtime() -> Any:
    from guard.config import load_settings
    from guard.logs import configure_logging
    from guard.runtime import build_runtime

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    return build_runtime(settings)


def _operator_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


@contextmanager
def _unit(rt: Any) -> Iterator[Session]:
    from guard.db import transaction

    with transaction(rt.sessions) as session:
        yield session


def _audit(rt: Any, session: Session, tenant_id: str, action: str, details: dict[str, Any]) -> None:
    from guard.audit.service import append
    from guard.context import Caller

    append(session, caller=Caller(tenant_id=tenant_id, key_id=None, role="operator",
                                  actor=_operator_actor()),
           action=action, outcome="ok", clock=rt.clock, policy=rt.policies.base, details=details)


@click.group()
def cli() -> None:
    """Guard: compliance and payment-handling middleware for contact centers."""


# ----------------------------------------------------------------------------- serve


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="default: GUARD_PORT or 8080")
def serve(host: str, port: int | None) -> None:
    """Serve the API with the development server (use gunicorn in production)."""
    from guard import create_app

    app = create_app()
    port = port if port is not None else app.extensions["guard"].settings.port
    click.echo(f"Guard listening on http://{host}:{port} (OpenAPI: /v1/openapi.json)")
    app.run(host=host, port=port, threaded=True, use_reloader=False)


# ----------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (the schema exists only through them)."""
    from guard.config import load_settings
    from guard.migrate import upgrade

    settings = load_settings()
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    click.echo("database at head")


@db.command("current")
def db_current() -> None:
    """Show the database's and the code's migration revisions."""
    from guard.migrate import current_revisions, head_revisions

    rt = _runtime()
    with rt.engine.connect() as conn:
        current = current_revisions(conn)
    click.echo(f"database: {sorted(current) or 'empty'}; code head: {sorted(head_revisions())}")


# ----------------------------------------------------------------------------- tenants, keys


@cli.group()
def tenants() -> None:
    """Tenants."""


@tenants.command("create")
@click.argument("name")
def tenants_create(name: str) -> None:
    """Create a tenant."""
    from guard.auth.service import create_tenant

    rt = _runtime()
    with _unit(rt) as session:
        tenant = create_tenant(session, name, clock=rt.clock)
        _audit(rt, session, tenant.id, "tenant.create", {"name": name})
    click.echo(f"{tenant.id}\t{tenant.name}")


@tenants.command("list")
def tenants_list() -> None:
    """List tenants."""
    from sqlalchemy import select

    from guard.auth.models import Tenant

    rt = _runtime()
    with _unit(rt) as session:
        for t in session.execute(select(Tenant).order_by(Tenant.name)).scalars():
            click.echo(f"{t.id}\t{t.name}\t{t.created_at.isoformat()}")


@cli.group()
def keys() -> None:
    """API keys."""


def _parse_expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    if value[-1] in "dh" and value[:-1].isdigit():
        n = int(value[:-1])
        return datetime.now(UTC) + (timedelta(days=n) if value[-1] == "d" else timedelta(hours=n))
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise click.BadParameter("give a time zone (e.g. 2027-01-01T00:00:00Z) or 30d / 12h")
    return parsed


@keys.command("create")
@click.option("--tenant", required=True, help="tenant name or id")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["agent", "ai_agent", "dialer", "supervisor", "auditor",
                                 "privacy_officer", "admin"]))
@click.option("--expires", default=None, help="ISO time with zone, or 30d / 12h")
@click.option("--label", default=None)
@click.option("--env", "environment", type=click.Choice(["live", "test"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def keys_create(tenant: str, roles: tuple[str, ...], expires: str | None, label: str | None,
                environment: str | None, as_json: bool) -> None:
    """Create an API key; its text is printed once and never stored."""
    from guard.auth.service import create_key, get_tenant

    rt = _runtime()
    with _unit(rt) as session:
        t = get_tenant(session, tenant)
        key, token = create_key(session, tenant_id=t.id, roles=list(roles),
                                pepper=rt.keyring.current("api_key_pepper").material,
                                clock=rt.clock, environment=environment or rt.settings.key_environment,
                                expires_at=_parse_expiry(expires), label=label)
        _audit(rt, session, t.id, "auth.key.create", {"created_key_id": key.id, "roles": key.roles})
    if as_json:
        click.echo(json.dumps({"id": key.id, "tenant": t.name, "roles": key.roles, "key": token,
                               "expires_at": key.expires_at.isoformat() if key.expires_at else None}))
    else:
        click.echo(f"{key.id}\t{','.join(key.roles)}\t{token}")


@keys.command("list")
@click.option("--tenant", default=None)
def keys_list(tenant: str | None) -> None:
    """List keys (ids, roles, expiry, revocation — never secrets)."""
    from guard.auth.service import get_tenant, list_keys

    rt = _runtime()
    with _unit(rt) as session:
        tenant_id = get_tenant(session, tenant).id if tenant else None
        for k in list_keys(session, tenant_id):
            state = "revoked" if k.revoked_at else ("expired" if k.expires_at and
                                                     k.expires_at <= rt.clock.now() else "active")
            click.echo(f"{k.id}\t{k.tenant_id}\t{','.join(k.roles)}\t{state}\t{k.label or ''}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key now (every worker refuses it within one second)."""
    from guard.auth.service import revoke_key

    rt = _runtime()
    with _unit(rt) as session:
        key = revoke_key(session, key_id, clock=rt.clock)
        _audit(rt, session, key.tenant_id, "auth.key.revoke", {"revoked_key_id": key.id})
    click.echo(f"revoked {key_id}")


# ----------------------------------------------------------------------------- audit


@cli.group("audit")
def audit_group() -> None:
    """The audit chain."""


@audit_group.command("verify")
@click.option("--tenant", default=None, help="tenant name or id (default: every chain)")
@click.option("--full", is_flag=True, help="re-verify from the first event, ignoring the watermark")
def audit_verify(tenant: str | None, full: bool) -> None:
    """Walk the chain; print OK with the count, or the first bad seq and what is wrong."""
    from guard.audit.service import SYSTEM_TENANT_ID, tenants_with_chains, verify
    from guard.auth.service import get_tenant

    rt = _runtime()
    with _unit(rt) as session:
        if tenant in (None, "system", SYSTEM_TENANT_ID):
            ids = tenants_with_chains(session) if tenant is None else [SYSTEM_TENANT_ID]
        else:
            ids = [get_tenant(session, tenant).id]
    failed = False
    for tenant_id in ids:
        with _unit(rt) as session:
            res = verify(session, tenant_id, clock=rt.clock, full=full)
        if res.ok:
            click.echo(f"{tenant_id}: OK {res.verified_through} events "
                       f"({res.checked} checked now)")
        else:
            failed = True
            click.echo(f"{tenant_id}: BROKEN at seq {res.first_bad_seq}: {res.problem}: "
                       f"{res.message}")
    sys.exit(1 if failed else 0)


@audit_group.command("prune")
def audit_prune() -> None:
    """Drop the bodies of events past retention (hashes stay; the chain still verifies)."""
    from guard.jobs import run_job

    rt = _runtime()
    click.echo(json.dumps(run_job(rt, "audit.prune", force=True)))


@audit_group.command("checkpoint")
@click.option("--tenant", default=None, help="tenant name or id (default: every chain)")
def audit_checkpoint(tenant: str | None) -> None:
    """Sign a checkpoint of each verified chain now and deliver it to witnesses."""
    from guard.jobs import run_job

    if tenant is not None:
        click.echo("note: checkpoints are made for every tenant at once", err=True)
    rt = _runtime()
    click.echo(json.dumps(run_job(rt, "audit.checkpoint", force=True)))


@audit_group.command("public-key")
def audit_public_key() -> None:
    """Print the checkpoint signing public key (raw Ed25519, base64) for offline verification."""
    from guard.audit.proofs import public_key_b64, signing_key

    rt = _runtime()
    click.echo(public_key_b64(signing_key(rt.keyring)[1].public_key()))


@audit_group.command("export")
@click.option("--tenant", required=True, help="tenant name or id")
@click.option("--from", "start", default=None, help="ISO time with zone (inclusive)")
@click.option("--to", "end", default=None, help="ISO time with zone (exclusive)")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True)
@click.option("--checkpoint-out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="also write the covering checkpoint here")
def audit_export(tenant: str, start: str | None, end: str | None, fmt: str, output: str,
                 checkpoint_out: str | None) -> None:
    """Export a range of events with the checkpoint and proof that cover it (constant memory)."""
    from guard.audit import proofs
    from guard.audit.service import verify
    from guard.auth.service import get_tenant

    rt = _runtime()
    with _unit(rt) as session:
        t = get_tenant(session, tenant)
        res = verify(session, t.id, clock=rt.clock)
        if not res.ok:
            raise click.ClickException(f"chain broken at seq {res.first_bad_seq}: {res.problem}")
        cp = proofs.create_checkpoint(session, t.id, keyring=rt.keyring, clock=rt.clock,
                                      verified_through=res.verified_through)
        a, b = proofs.seq_range(session, t.id, _parse_time(start), _parse_time(end), cp.tree_size)
        public_key = proofs.public_key_b64(proofs.signing_key(rt.keyring)[1].public_key())
        header = proofs.export_header(session, t.id, cp, a, b, public_key)
        _audit(rt, session, t.id, "audit.export", {"from_seq": a, "to_seq": b, "format": fmt,
                                                   "checkpoint_id": cp.id})
        cp_json = proofs.checkpoint_to_api(cp, rt.keyring)
    with _unit(rt) as session, open(output, "w", encoding="utf-8") as fh, \
            click.progressbar(length=b - a + 1, label=f"events {a}..{b}", file=sys.stderr) as bar:
        for chunk in proofs.render(header, _counting(proofs.iter_events(session, t.id, a, b), bar), fmt):
            fh.write(chunk)
    if checkpoint_out:
        with open(checkpoint_out, "w", encoding="utf-8") as fh:
            json.dump(cp_json, fh, indent=2)
    click.echo(f"wrote {b - a + 1} events to {output} (checkpoint {cp.id}, tree size {cp.tree_size})")


def _counting(events: Iterator[dict[str, Any]], bar: Any) -> Iterator[dict[str, Any]]:
    for ev in events:
        bar.update(1)
        yield ev


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-11-01T00:00:00Z")
    return parsed


@audit_group.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--checkpoint", "checkpoint_file", required=True, type=click.Path(exists=True),
              help="the trusted checkpoint (JSON), e.g. the witness's copy")
@click.option("--public-key", required=True,
              help="raw Ed25519 public key in base64, or a file holding it")
def audit_verify_export(file: str, checkpoint_file: str, public_key: str) -> None:
    """Check an export offline, with no database: signature, every hash, and tree membership."""
    from guard.audit.proofs import verify_export

    key = Path(public_key).read_text().strip() if Path(public_key).is_file() else public_key
    with open(checkpoint_file, encoding="utf-8") as fh:
        checkpoint = json.load(fh)
    with open(file, encoding="utf-8", newline="") as fh:
        result = verify_export(fh, checkpoint, key)
    click.echo(result.message)
    sys.exit(0 if result.ok else 1)
def _add_forward_command() -> None:
    from guard.siem.cli import forward

    audit_group.add_command(forward)


_add_forward_command()


# ----------------------------------------------------------------------------- jobs


@cli.command()
@click.option("--once", is_flag=True, help="run each due job once and exit")
@click.option("--poll", type=float, default=5.0, show_default=True)
def worker(once: bool, poll: float) -> None:
    """Run the periodic jobs (leased in the database, so each run happens once across hosts)."""
    from guard.jobs import load_jobs, run_job
    from guard.jobs import worker as loop

    rt = _runtime()
    if once:
        for name in sorted(load_jobs()):
            click.echo(f"{name}: {json.dumps(run_job(rt, name))}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"worker {rt.holder_id}: jobs {', '.join(sorted(load_jobs()))}")
    loop(rt, stop, poll)


@cli.group()
def jobs() -> None:
    """Periodic jobs (for cron: `guard jobs run NAME`)."""


@jobs.command("list")
def jobs_list() -> None:
    """List registered jobs and their intervals."""
    from guard.jobs import load_jobs

    for job in sorted(load_jobs().values(), key=lambda j: j.name):
        click.echo(f"{job.name}\tevery {job.interval_seconds}s\t{job.description}")


@jobs.command("run")
@click.argument("name")
@click.option("--force", is_flag=True, help="run even if not due (still never twice at once)")
def jobs_run(name: str, force: bool) -> None:
    """Run one job once."""
    from guard.jobs import run_job

    rt = _runtime()
    try:
        result = run_job(rt, name, force=force)
    except KeyError:
        raise click.UsageError(f"no job {name!r} (see `guard jobs list`)") from None
    click.echo(json.dumps(result) if result is not None else "skipped: not due or leased elsewhere")


# ----------------------------------------------------------------------------- demo


@cli.command()
def demo() -> None:
    """Create the `demo` tenant and one key per role on first run; print them (dev only)."""
    from sqlalchemy import select

    from guard.auth.models import Tenant
    from guard.auth.service import create_key, create_tenant
    from guard.policy import ROLE_NAMES

    rt = _runtime()
    path = Path(rt.settings.instance_dir) / "demo-keys.json"
    if path.exists():
        saved = json.loads(path.read_text())
        click.echo(f"demo tenant exists; its keys (from {path}):")
    else:
        saved = {}
        with _unit(rt) as session:
            tenant = session.execute(select(Tenant).where(Tenant.name == "demo")).scalar_one_or_none()
            if tenant is None:
                tenant = create_tenant(session, "demo", clock=rt.clock)
            for role in ROLE_NAMES:
                key, token = create_key(session, tenant_id=tenant.id, roles=[role],
                                        pepper=rt.keyring.current("api_key_pepper").material,
                                        clock=rt.clock, environment="test", label=f"demo {role}")
                saved[role] = token
                _audit(rt, session, tenant.id, "auth.key.create",
                       {"created_key_id": key.id, "roles": [role]})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(saved, fh, indent=2)
        click.echo("created tenant `demo` with one API key per role (kept in "
                   f"{path}, mode 0600, for this dev instance only):")
    for role, token in saved.items():
        click.echo(f"  {role:16} {token}")


def _add_domain_commands() -> None:
    from guard.tcpa.cli import calls, dnc

    cli.add_command(dnc)
    cli.add_command(calls)


_add_domain_commands()


def main() -> None:
    """Console-script entry point: clear one-line errors instead of tracebacks."""
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"guard: configuration error: {exc}", err=True)
        sys.exit(2)
    except GuardError as exc:
        click.echo(f"guard: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)


# ----------------------------------------------------------------------------- vault

def _register_domain_commands() -> None:
    from guard.pci.cli import vault_group

    cli.add_command(vault_group)


_register_domain_commands()
