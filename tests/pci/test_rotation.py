"""Key rotation under load: tokenize and read keep working, every token still resolves."""

from __future__ import annotations

import random
import threading

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from guard.db import transaction
from guard.keyring import Keyring
from guard.pci.keys import LocalKeyProvider
from guard.pci.models import VaultCard, VaultDek
from guard.pci.vault import Vault
from guard.runtime import Runtime
from tests.conftest import TenantKeys
from tests.pci.helpers import detokenize, luhn_complete, tokenize


class Fault(Exception):
    """Injected: the rotation process dies after a batch."""


def operator_vault(rt: Runtime) -> Vault:
    """A second Vault as the `guard vault` CLI process would build it (own keyring copy)."""
    from guard.pci.cvc import MemoryCvcStore

    keyring = Keyring(rt.settings.keyring_file)
    return Vault(keyring=keyring, provider=LocalKeyProvider(keyring), sessions=rt.sessions,
                 clock=rt.clock, cvc=MemoryCvcStore(rt.clock))


def test_rotation_under_load(client: FlaskClient, app: object, tenant: TenantKeys, rt: Runtime) -> None:
    rng = random.Random(5)
    pans: dict[str, str] = {}
    for _ in range(40):
        pan = luhn_complete("424242" + "".join(str(rng.randrange(10)) for _ in range(9)))
        r = tokenize(client, tenant.headers("agent"), pan)
        pans[r.json["token"]] = pan
    stop = threading.Event()
    errors: list[str] = []
    load_pans: dict[str, str] = {}

    def load() -> None:
        c = app.test_client()  # type: ignore[attr-defined]
        lrng = random.Random(9)
        while not stop.is_set():
            pan = luhn_complete("555555" + "".join(str(lrng.randrange(10)) for _ in range(9)))
            r = tokenize(c, tenant.headers("agent"), pan)
            if r.status_code == 503 and r.json["reasons"] == ["dek_rotated_retry"]:
                r = tokenize(c, tenant.headers("agent"), pan)  # what a client does: retry once
            if r.status_code not in (200, 201):
                errors.append(f"tokenize {r.status_code} {r.json}")
                continue
            load_pans[r.json["token"]] = pan
            g = c.get(f"/v1/cards/{r.json['token']}", headers=tenant.headers("agent"))
            if g.status_code != 200:
                errors.append(f"get {g.status_code}")
            try:
                if detokenize(rt, tenant.id, r.json["token"]).pan != pan:
                    errors.append("wrong pan")
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"detokenize {exc!r}")

    worker = threading.Thread(target=load)
    worker.start()
    try:
        op = operator_vault(rt)
        policies = rt.policies.base
        kek = op.rotate_kek(policies=policies, batch_size=3)
        assert kek.moved >= 1

        def die_after_two(batch: int) -> None:
            if batch == 2:
                raise Fault

        with pytest.raises(Fault):
            op.rotate_dek(tenant_id=tenant.id, policies=policies, batch_size=7, after_batch=die_after_two)
        with transaction(rt.sessions) as s:
            states = sorted(s.execute(select(VaultDek.state)
                                      .where(VaultDek.tenant_id == tenant.id)).scalars())
        assert states == ["active", "retiring"]
        resumed = operator_vault(rt).rotate_dek(tenant_id=tenant.id, policies=policies, batch_size=7)
        assert resumed.resumed and resumed.unreadable == 0
        second = operator_vault(rt).rotate_kek(policies=policies, batch_size=2)
        assert second.kek_version is not None
    finally:
        stop.set()
        worker.join(timeout=60)
    assert errors == []
    assert load_pans, "the load thread made progress during the rotations"
    for token, pan in {**pans, **load_pans}.items():
        assert detokenize(rt, tenant.id, token).pan == pan
    with transaction(rt.sessions) as s:
        deks = {d.id: d for d in s.execute(select(VaultDek).where(VaultDek.tenant_id == tenant.id)).scalars()}
        used = set(s.execute(select(VaultCard.dek_id).where(VaultCard.tenant_id == tenant.id)).scalars())
    # One active DEK is left; the first one, which nothing uses any more, is gone (retired).
    assert [d.state for d in deks.values()] == ["active"]
    assert resumed.retired and resumed.retired[0] not in deks
    assert used <= set(deks) and all(deks[u].wrapped is not None for u in used)
    # Old KEK versions no DEK uses are gone from the keyring file.
    kr = Keyring(rt.settings.keyring_file)
    assert [kv.version for kv in kr.versions("vault_kek")][-1] == second.kek_version


def test_rotation_commands_are_audited(client: FlaskClient, tenant: TenantKeys, rt: Runtime) -> None:
    from guard.audit.models import AuditEvent
    from guard.audit.service import SYSTEM_TENANT_ID

    tokenize(client, tenant.headers("agent"))
    op = operator_vault(rt)
    op.rotate_kek(policies=rt.policies.base)
    op.rotate_dek(tenant_id=tenant.id, policies=rt.policies.base)
    with transaction(rt.sessions) as s:
        tenant_actions = set(s.execute(select(AuditEvent.action)
                                       .where(AuditEvent.tenant_id == tenant.id)).scalars())
        system_actions = set(s.execute(select(AuditEvent.action).where(
            AuditEvent.tenant_id == SYSTEM_TENANT_ID)).scalars())
    assert {"vault.dek.rotate.start", "vault.dek.rotate"} <= tenant_actions
    assert "vault.kek.rotate" in system_actions
