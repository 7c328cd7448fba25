"""Abuse counters shared by every worker and host: in the database, or in Redis when configured.

Both stores keep time from the injected clock (never the store's own), so every process that
shares a clock shares the same windows, and tests move time without sleeping.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, Protocol, TypeVar

import redis
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from guard.auth.verify_models import LimitEvent, LimitState
from guard.db import insert_ignore
from guard.errors import ServiceUnavailable

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Window:
    """Distinct members seen in a sliding window, and when the oldest of them leaves it."""

    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class Block:
    """A name's consecutive failures and cool-down state."""

    consecutive: int
    blocks: int
    blocked_until: datetime | None


@dataclass(frozen=True)
class Cooldown:
    """A cool-down just started: how many this name has had, and when it ends."""

    blocks: int
    until: datetime


def cooldown_length(blocks_before: int, base: timedelta, cap: timedelta) -> timedelta:
    """base, 2*base, 4*base, ... never more than cap."""
    factor: int = 2 ** min(blocks_before, 30)
    return min(base * factor, cap)


class LimitStore(Protocol):
    """Sliding windows and cool-down state under string names."""

    def window_add(self, bucket: str, member: str, *, now: datetime, window: timedelta) -> Window:
        """Record `member` at `now` and return the distinct members within `window`."""
        ...

    def window(self, bucket: str, *, now: datetime, window: timedelta) -> Window:
        """The distinct members within `window` (read only)."""
        ...

    def state(self, name: str) -> Block:
        """A name's consecutive failures and cool-down."""
        ...

    def add_failure(self, name: str) -> int:
        """Count one more consecutive failure; returns the new count."""
        ...

    def reset_failures(self, name: str) -> None:
        """A success: consecutive failures restart at zero."""
        ...

    def start_cooldown(self, name: str, *, now: datetime, base: timedelta,
                       cap: timedelta) -> Cooldown | None:
        """Atomically start a cool-down of base * 2**(earlier cool-downs), at most `cap`.

        None when one is already running: two workers that see the threshold crossed at the
        same moment start one cool-down, not two.
        """
        ...

    def clear(self, name: str) -> None:
        """Forget a name's state entirely (re-enrollment by the back office)."""
        ...


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _fail_closed(fn: Callable[P, R]) -> Callable[P, R]:
    """Redis unreachable: refuse with 503 rather than verify without limits."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise ServiceUnavailable("the verification rate-limit store is unavailable",
                                     reasons=["limit_store_unavailable"]) from exc

    return wrapper


class RedisLimitStore:
    """Redis sorted sets (member -> time) and hashes, under the deployment's key prefix."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix + "identity:"

    @_fail_closed
    def window_add(self, bucket: str, member: str, *, now: datetime, window: timedelta) -> Window:
        """ZADD + trim + count in one MULTI, so concurrent adders see strictly growing counts."""
        key = self.prefix + "w:" + bucket
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {member: _ts(now)})
        pipe.zremrangebyscore(key, "-inf", _ts(now - window))
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
        pipe.expire(key, int(window.total_seconds()) + 3600)
        _, _, count, oldest, _ = pipe.execute()
        return Window(int(count), _dt(float(oldest[0][1])) if oldest else None)

    @_fail_closed
    def window(self, bucket: str, *, now: datetime, window: timedelta) -> Window:
        """Count members newer than now - window."""
        key = self.prefix + "w:" + bucket
        pipe = self.client.pipeline(transaction=False)
        pipe.zcount(key, f"({_ts(now - window)}", "+inf")
        pipe.zrangebyscore(key, f"({_ts(now - window)}", "+inf", start=0, num=1, withscores=True)
        count, oldest = pipe.execute()
        return Window(int(count), _dt(float(oldest[0][1])) if oldest else None)

    @_fail_closed
    def state(self, name: str) -> Block:
        """HGETALL of the name's state hash."""
        raw = self.client.hgetall(self.prefix + "s:" + name)
        data = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        until = data.get("blocked_until")
        return Block(int(data.get("consecutive", 0)), int(data.get("blocks", 0)),
                     _dt(float(until)) if until else None)

    @_fail_closed
    def add_failure(self, name: str) -> int:
        """HINCRBY consecutive."""
        return int(self.client.hincrby(self.prefix + "s:" + name, "consecutive", 1))

    @_fail_closed
    def reset_failures(self, name: str) -> None:
        """Consecutive back to zero."""
        self.client.hset(self.prefix + "s:" + name, "consecutive", 0)

    # Check-and-set in one script: Redis runs it atomically.
    _COOLDOWN = """
    local running = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
    if running > tonumber(ARGV[1]) then return false end
    local blocks = tonumber(redis.call('HGET', KEYS[1], 'blocks') or '0')
    local seconds = math.min(tonumber(ARGV[2]) * math.pow(2, math.min(blocks, 30)), tonumber(ARGV[3]))
    local untilts = tonumber(ARGV[1]) + seconds
    redis.call('HSET', KEYS[1], 'blocked_until', tostring(untilts), 'blocks', blocks + 1)
    return {blocks + 1, tostring(untilts)}
    """

    @_fail_closed
    def start_cooldown(self, name: str, *, now: datetime, base: timedelta,
                       cap: timedelta) -> Cooldown | None:
        """Run the check-and-set script."""
        out = self.client.eval(self._COOLDOWN, 1, self.prefix + "s:" + name, repr(_ts(now)),
                               repr(base.total_seconds()), repr(cap.total_seconds()))
        if not out:
            return None
        blocks, until = out
        until_s = until.decode() if isinstance(until, bytes) else str(until)
        return Cooldown(int(blocks), _dt(float(until_s)))

    @_fail_closed
    def clear(self, name: str) -> None:
        """Delete the state hash."""
        self.client.delete(self.prefix + "s:" + name)


class DbLimitStore:
    """Rows in identity_limit_state / identity_limit_events, in the caller's transaction.

    Each operation locks the name's state row first (FOR UPDATE; SQLite's BEGIN IMMEDIATE),
    so concurrent workers serialize per name and counts never go backwards.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def _lock(self, name: str) -> LimitState:
        stmt = select(LimitState).where(LimitState.name == name).with_for_update()
        row = self.session.execute(stmt).scalar_one_or_none()
        if row is None:
            insert_ignore(self.session, LimitState, name=name, consecutive=0, blocks=0)
            row = self.session.execute(stmt.execution_options(populate_existing=True)).scalar_one()
        return row

    def window_add(self, bucket: str, member: str, *, now: datetime, window: timedelta) -> Window:
        """Upsert (bucket, member) at now, prune the window, count."""
        self._lock("w:" + bucket)
        self.session.execute(delete(LimitEvent).where(LimitEvent.bucket == bucket,
                                                      LimitEvent.at <= now - window))
        existing = self.session.get(LimitEvent, (bucket, member))
        if existing is None:
            self.session.add(LimitEvent(bucket=bucket, member=member, at=now))
        else:
            existing.at = now
        self.session.flush()
        return self.window(bucket, now=now, window=window)

    def window(self, bucket: str, *, now: datetime, window: timedelta) -> Window:
        """Count rows newer than now - window."""
        count, oldest = self.session.execute(
            select(func.count(), func.min(LimitEvent.at))
            .where(LimitEvent.bucket == bucket, LimitEvent.at > now - window)).one()
        if isinstance(oldest, datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)  # aggregate results skip the UTC column type
        elif isinstance(oldest, str):
            oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
        return Window(int(count), oldest)

    def state(self, name: str) -> Block:
        """Read the state row (without locking)."""
        row = self.session.get(LimitState, "s:" + name)
        if row is None:
            return Block(0, 0, None)
        return Block(row.consecutive, row.blocks, row.blocked_until)

    def add_failure(self, name: str) -> int:
        """Increment consecutive under the row lock."""
        row = self._lock("s:" + name)
        row.consecutive += 1
        self.session.flush()
        return row.consecutive

    def reset_failures(self, name: str) -> None:
        """Consecutive back to zero."""
        row = self._lock("s:" + name)
        row.consecutive = 0
        self.session.flush()

    def start_cooldown(self, name: str, *, now: datetime, base: timedelta,
                       cap: timedelta) -> Cooldown | None:
        """Check and set under the row lock."""
        row = self._lock("s:" + name)
        if row.blocked_until is not None and row.blocked_until > now:
            return None
        row.blocked_until = now + cooldown_length(row.blocks, base, cap)
        row.blocks += 1
        self.session.flush()
        return Cooldown(row.blocks, row.blocked_until)

    def clear(self, name: str) -> None:
        """Delete the state row."""
        self.session.execute(delete(LimitState).where(LimitState.name == "s:" + name))
        self.session.flush()
