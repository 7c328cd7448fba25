"""Shared counters: Redis when several processes serve, in-process for the dev server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis


class Counters(Protocol):
    """Expiring integer counters under one key namespace."""

    def incr(self, key: str, ttl_seconds: int) -> int:
        """Add one to `key` (created with a TTL) and return the new value."""
        ...

    def take(self, prefix: str, select: Callable[[str], bool]) -> dict[str, int]:
        """Atomically read and delete the counters under `prefix` that `select` picks."""
        ...


class MemoryCounters:
    """In-process counters; correct only while a single process serves."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def incr(self, key: str, ttl_seconds: int) -> int:
        """Add one to `key`."""
        now = time.monotonic()
        with self._lock:
            expires, value = self._data.get(key, (now + ttl_seconds, 0))
            if expires < now:
                expires, value = now + ttl_seconds, 0
            self._data[key] = (expires, value + 1)
            return value + 1

    def take(self, prefix: str, select: Callable[[str], bool]) -> dict[str, int]:
        """Read and delete the counters under `prefix` that `select` picks."""
        with self._lock:
            keys = [k for k in self._data if k.startswith(prefix) and select(k)]
            return {k: self._data.pop(k)[1] for k in keys}


class RedisCounters:
    """Counters in Redis under a configurable key prefix (one prefix per deployment or test run)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def incr(self, key: str, ttl_seconds: int) -> int:
        """Add one to `key`."""
        full = self.prefix + key
        pipe = self.client.pipeline()
        pipe.incr(full)
        pipe.expire(full, ttl_seconds, nx=True)
        value, _ = pipe.execute()
        return int(value)

    def take(self, prefix: str, select: Callable[[str], bool]) -> dict[str, int]:
        """Read and delete picked counters (GETDEL, so two takers never double count)."""
        out: dict[str, int] = {}
        for raw in self.client.scan_iter(match=self.prefix + prefix + "*", count=500):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not select(name[len(self.prefix):]):
                continue
            value = self.client.getdel(name)
            if value is not None:
                out[name[len(self.prefix):]] = int(value)
        return out


def make_counters(redis_url: str | None, prefix: str) -> Counters:
    """Redis counters when a URL is configured, else in-process ones."""
    if redis_url:
        return RedisCounters(redis_url, prefix)
    return MemoryCounters()
