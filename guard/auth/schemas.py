"""API-key request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from guard.policy import Role
from guard.schemas import AwareDatetime, Request, Response


class WhoAmI(Response):
    """The tenant, key and roles behind the presented API key."""

    tenant_id: str
    tenant_name: str
    key_id: str
    roles: list[str]
    actor: str | None
    policy_version: str


class KeyCreate(Request):
    """A new API key for this tenant."""

    roles: list[Role] = Field(min_length=1, max_length=7)
    expires_at: AwareDatetime | None = None
    label: str | None = Field(default=None, max_length=128)
    environment: Literal["live", "test"] = "live"


class KeyRead(Response):
    """An API key's public facts (never its secret)."""

    id: str
    tenant_id: str
    environment: str
    roles: list[str]
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    """A key just created: `key` is shown this once and never again."""

    key: str


class KeyList(Response):
    """This tenant's keys."""

    keys: list[KeyRead]
