"""The long-lived parts of a Guard process, built once per app or CLI command (never at import)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from guard.auth.service import KeyCache
from guard.clock import Clock, SystemClock
from guard.config import Settings
from guard.counters import Counters, make_counters
from guard.db import make_engine, make_session_factory
from guard.keyring import Keyring
from guard.models import PolicyOverride
from guard.policy import PolicySet, PolicyStore, apply_overrides, load_policy_dir


@dataclass
class Runtime:
    """Settings, database, keyring, policies, clock and counters of one process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring
    policies: PolicyStore
    clock: Clock
    counters: Counters
    key_cache: KeyCache
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def holder_id(self) -> str:
        """This process's name in job leases."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def policies_for(self, session: Session, tenant_id: str) -> PolicySet:
        """A tenant's effective policies: defaults plus its validated overrides."""
        cached = self.policies.cached(tenant_id)
        if cached is not None:
            return cached
        rows = session.execute(select(PolicyOverride.name, PolicyOverride.content)
                               .where(PolicyOverride.tenant_id == tenant_id)).all()
        pset = apply_overrides(self.policies.base, {r[0]: r[1] for r in rows})
        self.policies.remember(tenant_id, pset)
        return pset

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Load policies and keyring and create the engine; a ConfigError names what is wrong."""
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    policies = PolicyStore(load_policy_dir(settings.policies_dir))
    keyring = Keyring(settings.keyring_file)
    engine = make_engine(settings.database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        keyring=keyring,
        policies=policies,
        clock=clock or SystemClock(),
        counters=make_counters(settings.redis_url, settings.redis_prefix),
        key_cache=KeyCache(settings.key_cache_seconds),
    )
