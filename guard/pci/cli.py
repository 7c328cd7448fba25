"""`guard vault ...` operator commands: KEK and DEK rotation (each audited)."""

from __future__ import annotations

import json

import click


@click.group("vault")
def vault_group() -> None:
    """The card vault's keys."""


@vault_group.command("rotate-kek")
@click.option("--batch", type=click.IntRange(1, 100000), default=500, show_default=True)
def rotate_kek(batch: int) -> None:
    """New KEK version; rewrap every DEK (no card is decrypted); retire unused KEK versions."""
    from guard.cli import _operator_actor, _runtime
    from guard.pci.vault import vault_for

    rt = _runtime()
    report = vault_for(rt).rotate_kek(policies=rt.policies.base, batch_size=batch,
                                      actor=_operator_actor())
    click.echo(json.dumps(report.as_dict()))


@vault_group.command("rotate-dek")
@click.option("--tenant", default=None, help="tenant name or id (default: every tenant with cards)")
@click.option("--batch", type=click.IntRange(1, 100000), default=500, show_default=True)
def rotate_dek(tenant: str | None, batch: int) -> None:
    """New DEK and re-encrypt stored cards in batches; re-run to resume an interrupted rotation."""
    from guard.auth.service import get_tenant
    from guard.cli import _operator_actor, _runtime, _unit
    from guard.pci.vault import vault_for

    rt = _runtime()
    vault = vault_for(rt)
    if tenant:
        with _unit(rt) as session:
            tenant_ids = [get_tenant(session, tenant).id]
    else:
        tenant_ids = vault.tenants_with_cards()
    for tenant_id in tenant_ids:
        with _unit(rt) as session:
            policies = rt.policies_for(session, tenant_id)
        report = vault.rotate_dek(tenant_id=tenant_id, policies=policies, batch_size=batch,
                                  actor=_operator_actor())
        click.echo(json.dumps({"tenant": tenant_id, **report.as_dict()}))
