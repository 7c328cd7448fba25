"""The short-lived CVC store: encrypted, expiring, taken once (PCI DSS 3.3.1.2, 3.3.2).

A CVC is never written to a table, a log, an audit record or disk. Between tokenization and
the charge later in the same call it lives here: AES-256-GCM under a key held by the keyring
(never beside the data), bound to tenant and token, in Redis with an expiry when several
processes serve, or in this process's memory for the single-process embedded server.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Protocol

import redis

from guard.clock import Clock
from guard.pci.keys import UnwrapFailed, open_sealed, seal


class CvcStoreUnavailable(Exception):
    """The shared store could not be reached: callers must refuse capture (fail closed)."""


class CvcStore(Protocol):
    """Where encrypted CVCs wait for their charge."""

    shared: bool

    def put(self, key: str, blob: bytes, ttl_seconds: int) -> None:
        """Keep `blob` under `key` for at most `ttl_seconds`."""
        ...

    def take(self, key: str) -> bytes | None:
        """Return and delete `blob` (None if absent or expired): a CVC is used once."""
        ...


class MemoryCvcStore:
    """Process memory, expiry by the injected clock; correct only while one process serves."""

    shared = False

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._data: dict[str, tuple[datetime, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, blob: bytes, ttl_seconds: int) -> None:
        """Store with an expiry; expired entries are swept on each write."""
        now = self._clock.now()
        with self._lock:
            for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
                del self._data[k]
            self._data[key] = (now + timedelta(seconds=ttl_seconds), blob)

    def take(self, key: str) -> bytes | None:
        """Pop the entry; an expired one is dropped and reported absent."""
        with self._lock:
            entry = self._data.pop(key, None)
        if entry is None or entry[0] <= self._clock.now():
            return None
        return entry[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class RedisCvcStore:
    """Redis SET with EX and GETDEL: expiry and take-once are Redis's, across all workers."""

    shared = True

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix + "cvc:"

    def put(self, key: str, blob: bytes, ttl_seconds: int) -> None:
        """SET key blob EX ttl."""
        try:
            self.client.set(self.prefix + key, blob, ex=ttl_seconds)
        except redis.RedisError as exc:
            raise CvcStoreUnavailable(str(exc)) from None

    def take(self, key: str) -> bytes | None:
        """GETDEL: the first caller gets it, every later one gets None."""
        try:
            value = self.client.getdel(self.prefix + key)
        except redis.RedisError as exc:
            raise CvcStoreUnavailable(str(exc)) from None
        return value if isinstance(value, bytes) else None


def make_cvc_store(redis_url: str | None, prefix: str, clock: Clock) -> CvcStore:
    """Redis when configured, else process memory."""
    if redis_url:
        return RedisCvcStore(redis_url, prefix)
    return MemoryCvcStore(clock)


def _aad(tenant_id: str, token: str) -> bytes:
    return f"guard-cvc|{tenant_id}|{token}".encode()


def put_cvc(store: CvcStore, key: bytes, *, tenant_id: str, token: str, cvc: str, ttl_seconds: int) -> None:
    """Encrypt and keep a CVC for `ttl_seconds` (callers refuse capture when the TTL is 0)."""
    store.put(f"{tenant_id}:{token}", seal(key, cvc.encode(), _aad(tenant_id, token)), ttl_seconds)


def take_cvc(store: CvcStore, key: bytes, *, tenant_id: str, token: str) -> str | None:
    """The CVC captured with `token`, removed on this first use; None if absent or expired."""
    blob = store.take(f"{tenant_id}:{token}")
    if blob is None:
        return None
    try:
        return open_sealed(key, blob, _aad(tenant_id, token)).decode()
    except UnwrapFailed:
        return None  # tampered with or bound to another card: unusable, and gone now
