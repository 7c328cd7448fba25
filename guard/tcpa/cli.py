"""`guard dnc ...`: load Do-Not-Call registries (operators)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click


@click.group("dnc")
def dnc() -> None:
    """Do-Not-Call registries."""


@dnc.command("import")
@click.option("--list", "list_name", required=True,
              help="national | state:XX | litigator | internal")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--full/--changes", default=True, help="a full file (default) or an additions/deletions file")
@click.option("--tenant", default=None, help="tenant id (litigator and internal lists belong to a tenant)")
@click.option("--date", "file_date", default=None,
              help="the file's date, YYYY-MM-DD (default: the file's modification time)")
def dnc_import(list_name: str, file: Path, full: bool, tenant: str | None, file_date: str | None) -> None:
    """Import a registry file atomically: a bad line or a failure leaves the previous version active."""
    from guard.cli import _audit, _runtime, _unit
    from guard.tcpa import registry

    if not registry.valid_list_name(list_name):
        raise click.BadParameter("national, state:XX, litigator or internal", param_hint="--list")
    tenant_scoped = list_name in ("litigator", "internal")
    if tenant_scoped and not tenant:
        raise click.BadParameter(f"the {list_name} list belongs to a tenant", param_hint="--tenant")
    if not tenant_scoped and tenant:
        raise click.BadParameter(f"the {list_name} list is operator-wide", param_hint="--tenant")
    try:
        when = (datetime.strptime(file_date, "%Y-%m-%d").replace(tzinfo=UTC) if file_date
                else datetime.fromtimestamp(file.stat().st_mtime, UTC))
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--date") from None
    rt = _runtime()
    size = file.stat().st_size
    show = sys.stderr.isatty()
    try:
        with click.progressbar(length=size, label=f"reading {file.name}", file=sys.stderr,
                               hidden=not show) as bar:
            parsed = registry.parse_file(file, changes=not full, progress=bar.update)
    except registry.ImportRejected as exc:
        for line, msg in exc.errors:
            click.echo(f"{file}:{line}: {msg}", err=True)
        click.echo(f"guard: import refused: {exc.total_errors} bad line(s); nothing was changed",
                   err=True)
        sys.exit(1)
    with _unit(rt) as session:
        if list_name == "internal":
            assert tenant is not None
            count = registry.import_internal(session, tenant_id=tenant, parsed=parsed, clock=rt.clock)
            version = "internal"
        else:
            ver = registry.import_registry(session, list_name=list_name, parsed=parsed,
                                           changes=not full, tenant_id=tenant, file_date=when,
                                           clock=rt.clock)
            count, version = ver.count, ver.id
        from guard.audit.service import SYSTEM_TENANT_ID

        _audit(rt, session, tenant or SYSTEM_TENANT_ID, "tcpa.dnc.import",
               {"list": list_name, "version": version, "mode": "full" if full else "changes",
                "lines": parsed.lines, "count": count, "file_date": when.date().isoformat()})
    click.echo(f"{list_name}\t{version}\t{count} numbers\tfile date {when.date().isoformat()}")
