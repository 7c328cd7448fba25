"""`guard dnc ...`: load Do-Not-Call registries (operators)."""

from __future__ import annotations

import json
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


@click.group("calls")
def calls() -> None:
    """Outbound call decisions."""


@calls.command("scrub")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", required=True, help="tenant id whose lists, consents and history apply")
@click.option("--purpose", required=True, type=click.Choice(["telemarketing", "informational",
                                                             "debt_collection"]))
@click.option("--method", required=True, type=click.Choice(["manual", "autodialer", "prerecorded", "sms"]))
@click.option("--campaign", default=None)
@click.option("--debt-ref", default=None)
@click.option("--state", default=None)
@click.option("--zip", "zip_code", default=None)
@click.option("--at", default=None, help="ISO time of the planned calls (default: now)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV output (default: standard output)")
def calls_scrub(file: Path, tenant: str, purpose: str, method: str, campaign: str | None,
                debt_ref: str | None, state: str | None, zip_code: str | None, at: str | None,
                out: Path | None) -> None:
    """Scrub a file of numbers (one per line, or CSV with the number first) offline, as CSV."""
    import numpy as np
    from pydantic import ValidationError

    from guard.cli import _audit, _runtime, _unit
    from guard.tcpa import scrub
    from guard.tcpa.registry import index_for
    from guard.tcpa.schemas import ScrubContextFields

    try:
        fields = ScrubContextFields.model_validate({
            "purpose": purpose, "method": method, "campaign": campaign, "debt_ref": debt_ref,
            "state": state, "zip": zip_code, "at": at})
    except ValidationError as exc:
        err = exc.errors(include_input=False)[0]
        raise click.BadParameter(err["msg"], param_hint="--" + str(err["loc"][0]) if err["loc"] else None) \
            from None
    rows = [ln.split(",", 1)[0].strip().strip('"') for ln in file.read_text("utf-8").splitlines()]
    if rows and rows[0].lower() in ("phone", "number", "phone_number"):
        rows = rows[1:]
    phones = [r for r in rows if r]
    rt = _runtime()
    now = rt.clock.now()
    with _unit(rt) as session:
        policy = rt.policies_for(session, tenant).get("outbound")
        ctx = scrub.ScrubContext(purpose=fields.purpose, method=fields.method, at=fields.at or now,
                                 campaign=fields.campaign, debt_ref=fields.debt_ref, state=fields.state,
                                 zip=fields.zip)
        result = scrub.ScrubResult(masks=np.zeros(0, dtype=np.int32), e164=[])
        batch = 100_000
        parts: list[scrub.ScrubResult] = []
        with click.progressbar(length=len(phones), label="scrubbing", file=sys.stderr,
                               hidden=not sys.stderr.isatty()) as bar:
            for start in range(0, len(phones), batch):
                part = phones[start:start + batch]
                parts.append(scrub.scrub(session, tenant_id=tenant, policy=policy, ctx=ctx,
                                         phones=part, now=now, index=index_for(rt),
                                         table=scrub.prefix_table(rt.extras)))
                bar.update(len(part))
        result = scrub.ScrubResult(
            masks=np.concatenate([p.masks for p in parts]) if parts else result.masks,
            e164=[x for p in parts for x in p.e164],
            registry_versions=parts[0].registry_versions if parts else {})
        chunks = scrub.render(result, "csv")
        root = scrub.digest(chunks)
        totals = result.totals()
        _audit(rt, session, tenant, "tcpa.call.scrub", {
            "count": len(phones), "totals": totals, "registry_versions": result.registry_versions,
            "digest": {"alg": "merkle-sha256", "leaf": f"{scrub.CHUNK_LINES} output lines", "root": root},
            "purpose": fields.purpose, "method": fields.method, "at": ctx.at.isoformat(), "format": "csv",
            "offline": True})
    fh = out.open("wb") if out else sys.stdout.buffer
    try:
        fh.write(b"index,phone_e164,decision,reasons\n")
        for chunk in chunks:
            fh.write(chunk)
    finally:
        if out:
            fh.close()
    click.echo(json.dumps({"totals": totals, "digest": root}), err=True)
