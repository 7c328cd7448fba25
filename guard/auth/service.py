"""Tenants and API keys: creation, authentication (constant time, cached <= 1 s), revocation."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from guard.audit.service import ensure_head
from guard.auth.models import ApiKey, Tenant
from guard.clock import Clock
from guard.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from guard.ids import new_id, random_string
from guard.policy import ROLE_NAMES

PUBLIC_ID_LEN = 12
SECRET_LEN = 24  # 24 base-62 characters: ~143 bits of randomness, beyond the 128 required
_KEY_RE = re.compile(rf"^gk_(live|test)_([0-9A-Za-z]{{{PUBLIC_ID_LEN}}})([0-9A-Za-z]{{{SECRET_LEN}}})$")
_TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class KeyInfo:
    """What a valid key grants."""

    key_id: str
    tenant_id: str
    roles: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None
    key_hash: str
    tenant_name: str = ""


class KeyRejected(Unauthorized):
    """A key that exists but may not be used (revoked or expired): audited in its tenant."""

    audited = True

    def __init__(self, info: KeyInfo, reason: str) -> None:
        super().__init__(f"API key {reason.removeprefix('key_')}", reasons=[reason])
        self.info = info


def hash_key(pepper: bytes, token: str) -> str:
    """Keyed hash of a key's full text (what the database stores)."""
    return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()


def create_tenant(session: Session, name: str, *, clock: Clock) -> Tenant:
    """Create a tenant and its audit chain head."""
    if not _TENANT_NAME_RE.match(name):
        raise ValidationFailed([{"loc": ["name"], "msg": "lowercase letters, digits, - and _ only"}])
    if session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none():
        raise Conflict(f"tenant {name!r} exists", code="tenant_exists")
    tenant = Tenant(id=new_id("ten", 16), name=name, created_at=clock.now())
    session.add(tenant)
    session.flush()
    ensure_head(session, tenant.id)
    return tenant


def get_tenant(session: Session, name_or_id: str) -> Tenant:
    """A tenant by name or id."""
    tenant = session.execute(select(Tenant).where(
        (Tenant.name == name_or_id) | (Tenant.id == name_or_id))).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"no tenant {name_or_id!r}")
    return tenant


def create_key(
    session: Session,
    *,
    tenant_id: str,
    roles: Sequence[str],
    pepper: bytes,
    clock: Clock,
    environment: str = "live",
    expires_at: datetime | None = None,
    label: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored or shown again."""
    bad = [r for r in roles if r not in ROLE_NAMES]
    if not roles or bad:
        raise ValidationFailed([{"loc": ["roles"], "msg": f"unknown role(s): {', '.join(bad)}"
                                 if bad else "at least one role is required"}])
    if environment not in ("live", "test"):
        raise ValidationFailed([{"loc": ["environment"], "msg": "must be live or test"}])
    if expires_at is not None and expires_at <= clock.now():
        raise ValidationFailed([{"loc": ["expires_at"], "msg": "must be in the future"}])
    public_id = random_string(PUBLIC_ID_LEN)
    token = f"gk_{environment}_{public_id}{random_string(SECRET_LEN)}"
    key = ApiKey(
        id=f"key_{public_id}", tenant_id=tenant_id, environment=environment,
        key_hash=hash_key(pepper, token), roles=list(dict.fromkeys(roles)), label=label,
        created_at=clock.now(), expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    return key, token


class KeyCache:
    """Per-process cache of key rows, trusted for at most `ttl` seconds (revocation bound)."""

    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._now = monotonic
        self._data: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> tuple[bool, KeyInfo | None]:
        """(hit, info); a hit may be a cached 'no such key'."""
        if self.ttl <= 0:
            return False, None
        with self._lock:
            entry = self._data.get(key_id)
        if entry is None or self._now() - entry[0] >= self.ttl:
            return False, None
        return True, entry[1]

    def put(self, key_id: str, info: KeyInfo | None) -> None:
        """Remember a lookup."""
        if self.ttl > 0:
            with self._lock:
                if len(self._data) > 100_000:
                    self._data.clear()
                self._data[key_id] = (self._now(), info)

    def evict(self, key_id: str) -> None:
        """Forget a key (revoked in this process)."""
        with self._lock:
            self._data.pop(key_id, None)


_DUMMY_HASH = "0" * 64


def authenticate(session: Session, token: str, *, pepper: bytes, now: datetime,
                 cache: KeyCache) -> KeyInfo:
    """The key's grants, or Unauthorized (unknown) / KeyRejected (revoked, expired)."""
    m = _KEY_RE.match(token)
    if not m:
        raise Unauthorized("malformed API key", reasons=["key_malformed"])
    key_id = f"key_{m.group(2)}"
    hit, info = cache.get(key_id)
    if not hit:
        found = session.execute(select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
                                .where(ApiKey.id == key_id)).one_or_none()
        info = None if found is None else KeyInfo(
            key_id=found[0].id, tenant_id=found[0].tenant_id, roles=tuple(found[0].roles),
            expires_at=found[0].expires_at, revoked_at=found[0].revoked_at,
            key_hash=found[0].key_hash, tenant_name=found[1])
        cache.put(key_id, info)
    presented = hash_key(pepper, token)
    # Compare even for unknown ids so timing does not reveal which public ids exist.
    matches = hmac.compare_digest(presented, info.key_hash if info else _DUMMY_HASH)
    if info is None or not matches:
        raise Unauthorized("unknown API key", reasons=["key_unknown"])
    if info.revoked_at is not None:
        raise KeyRejected(info, "key_revoked")
    if info.expires_at is not None and info.expires_at <= now:
        raise KeyRejected(info, "key_expired")
    return info


def list_keys(session: Session, tenant_id: str | None = None) -> list[ApiKey]:
    """Keys (never their secrets), newest first."""
    stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if tenant_id:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    return list(session.execute(stmt).scalars())


def revoke_key(session: Session, key_id: str, *, clock: Clock, tenant_id: str | None = None,
               cache: KeyCache | None = None) -> ApiKey:
    """Revoke a key now; other processes stop accepting it within the cache TTL (<= 1 s)."""
    key = session.get(ApiKey, key_id)
    if key is None or (tenant_id is not None and key.tenant_id != tenant_id):
        raise NotFound(f"no key {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
    session.flush()
    if cache is not None:
        cache.evict(key_id)
    return key
