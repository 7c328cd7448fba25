"""Test fixtures: every integration test runs on SQLite and, when configured, PostgreSQL.

Each test run creates its own PostgreSQL database (unique name, dropped at the end) and its own
Redis key prefix, so parallel runs and helpers never collide. Time comes from a FixedClock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from guard import create_app
from guard.auth.service import create_key, create_tenant
from guard.clock import FixedClock
from guard.config import Settings
from guard.db import transaction
from guard.migrate import upgrade
from guard.policy import ROLE_NAMES
from guard.runtime import Runtime

RUN_ID = uuid.uuid4().hex[:10]
START = datetime(2026, 11, 23, 15, 0, 0, tzinfo=UTC)
PG_ENV = "GUARD_TEST_POSTGRES_URL"
REDIS_ENV = "GUARD_TEST_REDIS_URL"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The configured PostgreSQL server; an unreachable one fails the run (never skips)."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip("GUARD_TEST_POSTGRES_URL is not set")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    try:
        eng = create_engine(url)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{PG_ENV}={url} is unreachable: {exc}")
    return url


def _create_pg_database(admin_url: str, name: str) -> str:
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(admin_url: str, name: str) -> None:
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run."""
    name = f"guard_test_{RUN_ID}"
    url = _create_pg_database(pg_admin_url, name)
    upgrade(url)
    yield url
    _drop_pg_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, migrated SQLite database for this test run."""
    path = tmp_path_factory.mktemp("sqlite") / "guard.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(scope="session", params=_backends())
def db_url(request: pytest.FixtureRequest) -> str:
    """Each integration test runs once per backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this run only; its keys are deleted at the end."""
    prefix = f"guardtest:{RUN_ID}:"
    yield prefix
    url = os.environ.get(REDIS_ENV)
    if url:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Instance directory (keyring) shared by the run."""
    return tmp_path_factory.mktemp("instance")


def make_settings(db_url: str, instance_dir: Path, redis_prefix: str, **overrides: Any) -> Settings:
    """Settings for a test app."""
    values: dict[str, Any] = {
        "instance_dir": instance_dir,
        "database_url": db_url,
        "keyring_path": instance_dir / "test.keyring",
        "log_json": True,
        "redis_url": os.environ.get(REDIS_ENV),
        "redis_prefix": redis_prefix,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(db_url: str, instance_dir: Path, redis_prefix: str) -> Settings:
    """Settings of this test's app."""
    return make_settings(db_url, instance_dir, redis_prefix)


@pytest.fixture
def clock() -> FixedClock:
    """A clock pinned to a fixed date; tests move it explicitly."""
    return FixedClock(START)


@pytest.fixture
def app(settings: Settings, clock: FixedClock) -> Iterator[Flask]:
    """A Guard app on this test's backend."""
    application = create_app(settings, clock=clock)
    yield application
    application.extensions["guard"].close()


@pytest.fixture
def rt(app: Flask) -> Runtime:
    """The app's runtime."""
    runtime = app.extensions["guard"]
    assert isinstance(runtime, Runtime)
    return runtime


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client."""
    return app.test_client()


@dataclass
class TenantKeys:
    """A tenant with one key per role."""

    id: str
    name: str
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str, actor: str | None = "agent-007") -> dict[str, str]:
        """Request headers for a key of `role`."""
        h = {"Authorization": f"Bearer {self.keys[role]}"}
        if actor:
            h["X-Guard-Actor"] = actor
        return h


def new_tenant(rt: Runtime, prefix: str = "t") -> TenantKeys:
    """Create a uniquely named tenant with one key per role."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    with transaction(rt.sessions) as session:
        tenant = create_tenant(session, name, clock=rt.clock)
        out = TenantKeys(id=tenant.id, name=name)
        for role in ROLE_NAMES:
            key, token = create_key(session, tenant_id=tenant.id, roles=[role],
                                    pepper=rt.keyring.current("api_key_pepper").material,
                                    clock=rt.clock, environment="test")
            out.keys[role] = token
            out.key_ids[role] = key.id
    return out


@pytest.fixture
def tenant(rt: Runtime) -> TenantKeys:
    """A fresh tenant with one key per role."""
    return new_tenant(rt)


@pytest.fixture
def other_tenant(rt: Runtime) -> TenantKeys:
    """A second tenant, to prove isolation."""
    return new_tenant(rt, "other")
