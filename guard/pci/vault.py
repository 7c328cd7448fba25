"""The card vault: tokenize, view, delete, detokenize (internal), CVC hand-off, key rotation.

Envelope encryption: each PAN is sealed with AES-256-GCM under its tenant's data-encryption
key (DEK); a DEK is stored only wrapped by a key-encryption key (KEK) of a `KeyProvider`.
The associated data binds a ciphertext to its tenant, token and DEK, so a ciphertext copied
into another row fails to decrypt. Functions here take `session=`, flush and never commit
(rotation commands, which run in batches, own their transactions).

For the payment adapter (issue 4) the supported entry points are `Vault.detokenize`
(token -> PAN and expiry for one audited purpose), `Vault.card` (brand, last4, ...) and
`Vault.take_cvc` (the CVC captured at tokenization, removed on first use).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from guard import audit
from guard.audit.service import SYSTEM_TENANT_ID
from guard.clock import Clock
from guard.context import Caller
from guard.db import transaction
from guard.errors import Conflict, Denied, GuardError, NotFound, ServiceUnavailable, ValidationFailed
from guard.ids import new_id
from guard.keyring import Keyring
from guard.pci import cvc as cvc_store
from guard.pci.cards import Brand, CardRuleError, bin_of, validate_cvc, validate_expiry, validate_pan
from guard.pci.keys import (
    CVC_PURPOSE,
    FINGERPRINT_PURPOSE,
    KEK_PURPOSE,
    KeyProvider,
    UnwrapFailed,
    Wrapped,
    fingerprint,
    open_sealed,
    seal,
    tenant_fingerprint_key,
)
from guard.pci.models import VaultCard, VaultDek
from guard.pci.policy import VaultPolicy
from guard.policy import PolicySet

log = logging.getLogger(__name__)
FP_PREFIX = 12  # hex characters of a fingerprint written to audit events


class CardRejected(ValidationFailed):
    """A card field broke a rule: 422 naming the field and the rule, never the value."""

    audited = True

    def __init__(self, err: CardRuleError) -> None:
        super().__init__([{"loc": ["body", err.field], "msg": err.message, "type": err.rule}])
        self.reasons = [err.rule]


class CardNotFound(NotFound):
    """No such token in the caller's tenant (another tenant's token is indistinguishable)."""

    code = "card_not_found"
    audited = True

    def __init__(self) -> None:
        super().__init__("no card with this token", reasons=["card_not_found"])


class CardIntegrityError(GuardError):
    """A stored ciphertext failed authentication (moved, altered, or its key is gone)."""

    status = 500
    code = "card_unreadable"
    title = "Stored card failed its integrity check"


class CvcCaptureRefused(Conflict):
    """A CVC cannot be kept for later here: it must come with the charge itself."""

    code = "cvc_capture_unavailable"


@dataclass(frozen=True)
class CardView:
    """The masked view of a card: never more than BIN (16+ digit PANs) and last 4."""

    token: str
    brand: str
    last4: str
    bin: str | None
    exp_month: int
    exp_year: int
    fingerprint: str
    customer_ref: str | None
    created_at: datetime

    @property
    def fp_prefix(self) -> str:
        """The part of the fingerprint audit events carry."""
        return self.fingerprint[:FP_PREFIX]


@dataclass(frozen=True)
class CardSecret:
    """A detokenized card for the processor adapter only; its repr never shows the PAN."""

    token: str
    pan: str = field(repr=False)
    exp_month: int
    exp_year: int
    brand: str
    last4: str


@dataclass(frozen=True)
class _IntegrityFacts:
    token: str
    dek_id: str
    fp_prefix: str


@dataclass
class TokenizeResult:
    """The stored card and whether this call created it (False: already on file)."""

    card: CardView
    created: bool
    cvc_captured: bool


@dataclass
class RotationReport:
    """What a rotation command did."""

    kind: str
    tenants: int = 0
    batches: int = 0
    moved: int = 0
    unreadable: int = 0
    retired: list[str] = field(default_factory=list)
    kek_version: int | None = None
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """For CLI output and audit details."""
        return {"kind": self.kind, "tenants": self.tenants, "batches": self.batches,
                "moved": self.moved, "unreadable": self.unreadable, "retired": self.retired,
                "kek_version": self.kek_version, "resumed": self.resumed}


def _view(row: VaultCard) -> CardView:
    return CardView(token=row.token, brand=row.brand, last4=row.last4, bin=row.bin,
                    exp_month=row.exp_month, exp_year=row.exp_year, fingerprint=row.fingerprint,
                    customer_ref=row.customer_ref, created_at=row.created_at)


def _dek_aad(dek: VaultDek) -> bytes:
    return f"guard-dek|{dek.tenant_id}|{dek.id}".encode()


def _card_aad(tenant_id: str, token: str, dek_id: str) -> bytes:
    return f"guard-card|v1|{tenant_id}|{token}|{dek_id}".encode()


class Vault:
    """One process's vault: KEK provider, DEK cache, fingerprint keys and CVC store."""

    def __init__(self, *, keyring: Keyring, provider: KeyProvider, sessions: sessionmaker[Session],
                 clock: Clock, cvc: cvc_store.CvcStore) -> None:
        self.keyring = keyring
        self.provider = provider
        self.sessions = sessions
        self.clock = clock
        self.cvc = cvc
        # Create every vault secret at start-up, so a serving process never writes the keyring.
        for purpose in (KEK_PURPOSE, FINGERPRINT_PURPOSE, CVC_PURPOSE):
            keyring.current(purpose)
        self._deks: dict[str, bytes] = {}
        self._fp_keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- keys

    def _fp_key(self, tenant_id: str) -> bytes:
        key = self._fp_keys.get(tenant_id)
        if key is None:
            key = tenant_fingerprint_key(self.keyring, tenant_id)
            self._fp_keys[tenant_id] = key
        return key

    def _dek_material(self, dek: VaultDek) -> bytes:
        material = self._deks.get(dek.id)
        if material is not None:
            return material
        if dek.wrapped is None:
            raise UnwrapFailed(f"DEK {dek.id} is retired")
        material = self.provider.unwrap(Wrapped(dek.kek_provider, dek.kek_version, dek.wrapped),
                                        aad=_dek_aad(dek))
        with self._lock:
            self._deks[dek.id] = material
        return material

    def _new_dek(self, session: Session, tenant_id: str, version: int, state: str) -> VaultDek:
        dek = VaultDek(id=new_id("dek"), tenant_id=tenant_id, version=version, state=state,
                       kek_provider=self.provider.name, kek_version=0, wrapped=None,
                       created_at=self.clock.now())
        material = os.urandom(32)
        wrapped = self.provider.wrap(material, aad=_dek_aad(dek))
        dek.kek_provider, dek.kek_version, dek.wrapped = wrapped.provider, wrapped.kek_version, wrapped.blob
        session.add(dek)
        session.flush()
        with self._lock:
            self._deks[dek.id] = material
        return dek

    def _active_dek(self, session: Session, tenant_id: str) -> VaultDek:
        """The tenant's active DEK (created on the tenant's first card).

        No row lock here: a card INSERT's foreign-key check holds a KEY SHARE lock on its DEK
        until commit, and a DEK is retired by deleting its row, which waits for that lock and
        then fails while any card references the DEK. So no card can end up on a destroyed key.
        """
        stmt = select(VaultDek).where(VaultDek.tenant_id == tenant_id, VaultDek.state == "active")
        for _ in range(5):
            dek = session.execute(stmt).scalars().first()
            if dek is not None:
                return dek
            try:
                with session.begin_nested():
                    return self._new_dek(session, tenant_id, 1, "active")
            except IntegrityError:
                continue  # another process created the tenant's first DEK at the same moment
        raise ServiceUnavailable("the vault key for this tenant could not be resolved",
                                 reasons=["dek_unavailable"])

    # ------------------------------------------------------------------------- tokenize

    def tokenize(self, session: Session, *, tenant_id: str, number: str, exp_month: int,
                 exp_year: int, cvc: str | None, customer_ref: str | None, policy: VaultPolicy,
                 multiprocess: bool = False) -> TokenizeResult:
        """Validate and store a card; the same card and expiry again returns its existing token."""
        try:
            pan, brand = validate_pan(number)
            validate_expiry(exp_month, exp_year, now=self.clock.now(),
                            max_years_ahead=policy.max_expiry_years_ahead)
            if cvc is not None:
                validate_cvc(cvc, brand)
        except CardRuleError as err:
            raise CardRejected(err) from None
        if cvc is not None:
            self._check_cvc_capture(policy, multiprocess)
        fp = fingerprint(self._fp_key(tenant_id), pan)
        # Insert first (one round trip for a new card); the unique key (tenant, fingerprint,
        # expiry) turns a repeat, or a concurrent request for the same card, into a no-op.
        row = self._insert(session, tenant_id=tenant_id, pan=pan, brand=brand, fp=fp,
                           exp_month=exp_month, exp_year=exp_year, customer_ref=customer_ref)
        created = row is not None
        if row is None:
            row = self._by_fingerprint(session, tenant_id, fp, exp_month, exp_year)
            if row is None:  # deleted between the two statements: refuse rather than guess
                raise Conflict("the card changed while it was being tokenized; retry",
                               reasons=["concurrent_change"])
        existing = row
        captured = False
        if cvc is not None:
            self._put_cvc(tenant_id, existing.token, cvc, policy.cvc_ttl_seconds)
            captured = True
        return TokenizeResult(_view(existing), created, captured)

    def _by_fingerprint(self, session: Session, tenant_id: str, fp: str, exp_month: int,
                        exp_year: int) -> VaultCard | None:
        return session.execute(select(VaultCard).where(
            VaultCard.tenant_id == tenant_id, VaultCard.fingerprint == fp,
            VaultCard.exp_month == exp_month, VaultCard.exp_year == exp_year)).scalar_one_or_none()

    def _insert(self, session: Session, *, tenant_id: str, pan: str, brand: Brand, fp: str,
                exp_month: int, exp_year: int, customer_ref: str | None) -> VaultCard | None:
        """INSERT ... ON CONFLICT DO NOTHING; the new row, or None if the card was on file."""
        dek = self._active_dek(session, tenant_id)
        token = new_id("tok")
        values = dict(
            token=token, tenant_id=tenant_id, fingerprint=fp, brand=brand.name, last4=pan[-4:],
            bin=bin_of(pan), pan_length=len(pan), exp_month=exp_month, exp_year=exp_year,
            dek_id=dek.id, ciphertext=seal(self._dek_material(dek), pan.encode(),
                                           _card_aad(tenant_id, token, dek.id)),
            customer_ref=customer_ref, created_at=self.clock.now())
        ins = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        try:
            inserted = session.execute(ins(VaultCard).values(**values).on_conflict_do_nothing(
                index_elements=["tenant_id", "fingerprint", "exp_month", "exp_year"])
                .returning(VaultCard.token)).scalar_one_or_none()
        except IntegrityError:
            # The DEK read a moment ago was retired (deleted) before this INSERT: nothing was
            # written; the client retries and gets the new DEK.
            raise ServiceUnavailable("the vault key rotated during this request; retry",
                                     reasons=["dek_rotated_retry"]) from None
        if inserted is None:
            return None
        return VaultCard(**values)

    # ------------------------------------------------------------------------- CVC

    def _check_cvc_capture(self, policy: VaultPolicy, multiprocess: bool) -> None:
        if policy.cvc_ttl_seconds == 0:
            raise CvcCaptureRefused("this tenant keeps no CVC between calls; send it with the charge",
                                    reasons=["cvc_retention_disabled"])
        if multiprocess and not self.cvc.shared:
            raise CvcCaptureRefused(
                "several processes serve without a shared CVC store (set GUARD_REDIS_URL); "
                "send the CVC with the charge", reasons=["cvc_store_not_shared"])

    def _put_cvc(self, tenant_id: str, token: str, cvc: str, ttl: int) -> None:
        try:
            cvc_store.put_cvc(self.cvc, self.keyring.current(CVC_PURPOSE).material,
                              tenant_id=tenant_id, token=token, cvc=cvc, ttl_seconds=ttl)
        except cvc_store.CvcStoreUnavailable:
            raise ServiceUnavailable("the CVC store is unreachable; send the CVC with the charge",
                                     reasons=["cvc_store_unavailable"]) from None

    def take_cvc(self, *, tenant_id: str, token: str) -> str | None:
        """The CVC captured with `token`, removed by this call; None if absent or expired."""
        try:
            return cvc_store.take_cvc(self.cvc, self.keyring.current(CVC_PURPOSE).material,
                                      tenant_id=tenant_id, token=token)
        except cvc_store.CvcStoreUnavailable:
            raise ServiceUnavailable("the CVC store is unreachable", reasons=["cvc_store_unavailable"]
                                     ) from None

    # ------------------------------------------------------------------------- read, delete

    def _row(self, session: Session, tenant_id: str, token: str, *, lock: bool = False) -> VaultCard:
        stmt = select(VaultCard).where(VaultCard.tenant_id == tenant_id, VaultCard.token == token)
        row = session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
        if row is None:
            raise CardNotFound()
        return row

    def card(self, session: Session, *, tenant_id: str, token: str) -> CardView:
        """The masked view of a token of this tenant; CardNotFound (404) otherwise."""
        return _view(self._row(session, tenant_id, token))

    def delete(self, session: Session, *, tenant_id: str, token: str) -> CardView:
        """Destroy the card's ciphertext (the row goes; the audit trail keeps token and prefix)."""
        row = self._row(session, tenant_id, token, lock=True)
        view = _view(row)
        session.execute(delete(VaultCard).where(VaultCard.token == row.token))
        session.flush()
        try:
            self.cvc.take(f"{tenant_id}:{token}")  # a CVC waiting for this card goes with it
        except cvc_store.CvcStoreUnavailable:
            log.warning("vault: CVC store unreachable while deleting %s; its CVC expires by TTL", token)
        return view

    # ------------------------------------------------------------------------- detokenize

    def detokenize(self, session: Session, *, caller: Caller, token: str, purpose: str,
                   policies: PolicySet) -> CardSecret:
        """PAN and expiry of a token, for the processor adapter only; audited with its purpose.

        Refuses a purpose the vault policy does not list, another tenant's token (404), and a
        ciphertext that fails authentication (audited in its own transaction, then refused).
        """
        policy = policies.get("vault")
        assert isinstance(policy, VaultPolicy)
        tenant_id = caller.tenant_id
        if purpose not in policy.detokenize_purposes:
            raise Denied(f"detokenize purpose {purpose!r} is not allowed",
                         reasons=["detokenize_purpose_not_allowed"])
        row = self._row(session, tenant_id, token)
        dek = session.get(VaultDek, row.dek_id)
        try:
            if dek is None or dek.tenant_id != tenant_id:
                raise UnwrapFailed("the card's DEK is missing")
            pan = open_sealed(self._dek_material(dek), row.ciphertext,
                              _card_aad(tenant_id, row.token, row.dek_id)).decode()
        except UnwrapFailed:
            # The caller's transaction is failing anyway; end it first (on SQLite it holds the
            # write lock the audit transaction needs), then record the refusal on its own.
            facts = _IntegrityFacts(row.token, row.dek_id, row.fingerprint[:FP_PREFIX])
            session.rollback()
            self._record_integrity_failure(caller, facts, purpose=purpose, policies=policies)
            raise CardIntegrityError("this card cannot be decrypted; it was refused and audited",
                                     reasons=["ciphertext_rejected"]) from None
        audit.service.append(session, caller=caller, action="pci.card.detokenize", outcome="ok",
                             clock=self.clock, reasons=[f"purpose_{purpose}"], policy=policies,
                             details={"token": row.token, "fp_prefix": row.fingerprint[:FP_PREFIX],
                                      "purpose": purpose})
        return CardSecret(token=row.token, pan=pan, exp_month=row.exp_month, exp_year=row.exp_year,
                          brand=row.brand, last4=row.last4)

    def _record_integrity_failure(self, caller: Caller, facts: _IntegrityFacts, *, purpose: str,
                                  policies: PolicySet | None) -> None:
        with transaction(self.sessions) as s:
            audit.service.append(s, caller=caller, action="pci.card.integrity_failure",
                                 outcome="error", clock=self.clock, reasons=["ciphertext_rejected"],
                                 policy=policies, details={"token": facts.token, "dek_id": facts.dek_id,
                                                           "fp_prefix": facts.fp_prefix,
                                                           "purpose": purpose})
        log.error("vault: ciphertext of %s failed authentication (%s)", facts.token, purpose)

    # ------------------------------------------------------------------------- rotation

    def rotate_kek(self, *, policies: PolicySet, batch_size: int = 500, actor: str = "cli") -> RotationReport:
        """New KEK version; rewrap every DEK under it (no PAN is decrypted); retire unused KEKs."""
        report = RotationReport(kind="kek")
        report.kek_version = new_version = self.provider.rotate()
        after = ""
        while True:
            with transaction(self.sessions) as s:
                deks = s.execute(select(VaultDek).where(
                    VaultDek.id > after, VaultDek.wrapped.is_not(None))
                    .order_by(VaultDek.id).limit(batch_size)
                    .with_for_update(key_share=True)).scalars().all()
                if not deks:
                    break
                for dek in deks:
                    if dek.kek_provider == self.provider.name and dek.kek_version == new_version:
                        continue
                    assert dek.wrapped is not None
                    material = self.provider.unwrap(
                        Wrapped(dek.kek_provider, dek.kek_version, dek.wrapped), aad=_dek_aad(dek))
                    w = self.provider.wrap(material, aad=_dek_aad(dek))
                    dek.kek_provider, dek.kek_version, dek.wrapped = w.provider, w.kek_version, w.blob
                    report.moved += 1
                after = deks[-1].id
                report.batches += 1
        with transaction(self.sessions) as s:
            used = set(s.execute(select(VaultDek.kek_version).where(
                VaultDek.wrapped.is_not(None), VaultDek.kek_provider == self.provider.name)
                .distinct()).scalars())
            current = self.provider.current_version()
            for version in self.provider.versions():
                if version != current and version not in used:
                    self.provider.retire(version)
                    report.retired.append(f"kek:{version}")
            audit.service.append(s, caller=Caller(tenant_id=SYSTEM_TENANT_ID, key_id=None,
                                                  role="operator", actor=actor),
                                 action="vault.kek.rotate", outcome="ok", clock=self.clock,
                                 policy=policies,
                                 details=report.as_dict())
        return report

    def rotate_dek(self, *, tenant_id: str, policies: PolicySet, batch_size: int = 500,
                   actor: str = "cli", after_batch: Callable[[int], None] | None = None) -> RotationReport:
        """Start (or resume) a DEK rotation for a tenant: new DEK, re-encrypt PANs in batches.

        Resumable: if a previous run stopped, the tenant still has `retiring` DEKs and this
        call continues moving cards off them instead of starting another DEK. A DEK is retired
        (its wrapped material destroyed) only when no card uses it.
        """
        report = RotationReport(kind="dek", tenants=1)
        caller = Caller(tenant_id=tenant_id, key_id=None, role="operator", actor=actor)
        with transaction(self.sessions) as s:
            deks = s.execute(select(VaultDek).where(VaultDek.tenant_id == tenant_id)
                             .order_by(VaultDek.version).with_for_update(key_share=True)).scalars().all()
            if any(d.state == "retiring" for d in deks):
                report.resumed = True
            else:
                top = max((d.version for d in deks), default=0)
                for d in deks:
                    if d.state == "active":
                        d.state = "retiring"
                s.flush()
                self._new_dek(s, tenant_id, top + 1, "active")
            audit.service.append(s, caller=caller, action="vault.dek.rotate.start", outcome="ok",
                                 clock=self.clock, policy=policies, details={"resumed": report.resumed})
        active_id = self._active_id(tenant_id)
        after = ""
        while True:
            unreadable: list[_IntegrityFacts] = []
            with transaction(self.sessions) as s:
                rows = s.execute(select(VaultCard).where(
                    VaultCard.tenant_id == tenant_id, VaultCard.dek_id != active_id,
                    VaultCard.token > after).order_by(VaultCard.token).limit(batch_size)
                    .with_for_update()).scalars().all()
                if not rows:
                    break
                active = s.get(VaultDek, active_id)
                assert active is not None
                new_key = self._dek_material(active)
                for row in rows:
                    old = s.get(VaultDek, row.dek_id)
                    try:
                        if old is None or old.tenant_id != tenant_id:
                            raise UnwrapFailed("the card's DEK is missing")
                        pan = open_sealed(self._dek_material(old), row.ciphertext,
                                          _card_aad(tenant_id, row.token, row.dek_id))
                    except UnwrapFailed:
                        # Left on its DEK, which then is not retired; audited after this batch.
                        unreadable.append(_IntegrityFacts(row.token, row.dek_id,
                                                          row.fingerprint[:FP_PREFIX]))
                        continue
                    row.ciphertext = seal(new_key, pan, _card_aad(tenant_id, row.token, active_id))
                    row.dek_id = active_id
                    report.moved += 1
                after = rows[-1].token
            for facts in unreadable:
                report.unreadable += 1
                self._record_integrity_failure(caller, facts, purpose="rotate_dek", policies=policies)
            report.batches += 1
            if after_batch is not None:
                after_batch(report.batches)
        with transaction(self.sessions) as s:
            retiring = s.execute(select(VaultDek.id).where(
                VaultDek.tenant_id == tenant_id, VaultDek.state == "retiring")).scalars().all()
            for dek_id in retiring:
                in_use = s.execute(select(func.count()).select_from(VaultCard)
                                   .where(VaultCard.dek_id == dek_id)).scalar_one()
                if in_use:
                    continue  # unreadable cards, or cards written meanwhile: a re-run resumes
                try:
                    # Deleting destroys the wrapped key. It waits for any transaction that is
                    # inserting a card on this DEK and fails if one did (foreign key).
                    with s.begin_nested():
                        s.execute(delete(VaultDek).where(VaultDek.id == dek_id))
                except IntegrityError:
                    continue
                with self._lock:
                    self._deks.pop(dek_id, None)
                report.retired.append(dek_id)
            audit.service.append(s, caller=caller, action="vault.dek.rotate", outcome="ok",
                                 clock=self.clock, policy=policies, details=report.as_dict())
        return report

    def _active_id(self, tenant_id: str) -> str:
        with transaction(self.sessions) as s:
            return s.execute(select(VaultDek.id).where(
                VaultDek.tenant_id == tenant_id, VaultDek.state == "active")).scalar_one()

    def tenants_with_cards(self) -> list[str]:
        """Every tenant that has a DEK (the scope of `guard vault rotate-dek --all`)."""
        with transaction(self.sessions) as s:
            return list(s.execute(select(VaultDek.tenant_id).distinct()
                                  .order_by(VaultDek.tenant_id)).scalars())


_build_lock = threading.Lock()


def vault_for(rt: Any) -> Vault:
    """The process's Vault, built on first use from the runtime (keyring, sessions, clock)."""
    v = rt.extras.get("vault")
    if v is None:
        from guard.pci.cvc import make_cvc_store
        from guard.pci.keys import provider_for

        with _build_lock:
            v = rt.extras.get("vault")
            if v is not None:
                assert isinstance(v, Vault)
                return v
            v = Vault(keyring=rt.keyring, provider=provider_for(rt.keyring), sessions=rt.sessions,
                      clock=rt.clock, cvc=make_cvc_store(rt.settings.redis_url,
                                                         rt.settings.redis_prefix, rt.clock))
            rt.extras["vault"] = v
    assert isinstance(v, Vault)
    return v
