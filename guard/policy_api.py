"""Policy routes: the rules in force, any past version by hash, and tenant overrides."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import Field
from sqlalchemy import select

from guard.errors import NotFound
from guard.models import PolicyOverride, PolicyVersion
from guard.policy import apply_overrides
from guard.schemas import Request, Response
from guard.web import RequestContext, endpoint

bp = Blueprint("policies", __name__, url_prefix="/policies")


class PolicyRead(Response):
    """A policy version and its full content."""

    version: str
    content: dict[str, Any]


class OverridesWrite(Request):
    """Replace this tenant's overrides: policy file name -> partial content."""

    overrides: dict[str, dict[str, Any]] = Field(max_length=32)


class OverridesRead(Response):
    """This tenant's overrides and the effective version they produce."""

    overrides: dict[str, dict[str, Any]]
    effective_version: str


@endpoint(bp, "/current", permission="policies.read", response=PolicyRead,
          action="policies.current.read")
def current(c: RequestContext) -> PolicyRead:
    """The policies in force for this tenant now."""
    return PolicyRead(version=c.policies.version, content=dict(c.policies.content))


@endpoint(bp, "/overrides", permission="policies.read", response=OverridesRead,
          action="policies.overrides.read")
def get_overrides(c: RequestContext) -> OverridesRead:
    """This tenant's policy overrides."""
    rows = c.session.execute(select(PolicyOverride).where(
        PolicyOverride.tenant_id == c.tenant_id)).scalars()
    return OverridesRead(overrides={r.name: r.content for r in rows},
                         effective_version=c.policies.version)


@endpoint(bp, "/overrides", methods=("PUT",), permission="policies.manage", body=OverridesWrite,
          response=OverridesRead, action="policies.overrides.write", requires_actor=True)
def put_overrides(c: RequestContext, body: OverridesWrite) -> OverridesRead:
    """Replace this tenant's overrides; refused (422) if any value leaves the policy's bounds."""
    before = c.policies.version
    effective = apply_overrides(c.rt.policies.base, body.overrides)
    existing = {r.name: r for r in c.session.execute(select(PolicyOverride).where(
        PolicyOverride.tenant_id == c.tenant_id)).scalars()}
    for name, row in existing.items():
        if name not in body.overrides:
            c.session.delete(row)
    for name, content in body.overrides.items():
        current = existing.get(name)
        if current is None:
            c.session.add(PolicyOverride(tenant_id=c.tenant_id, name=name, content=content,
                                         updated_at=c.clock.now(), updated_by=c.caller.actor
                                         if c.caller else None))
        else:
            current.content, current.updated_at = content, c.clock.now()
    c.session.flush()
    c.rt.policies.forget(c.tenant_id)
    c._policies = effective
    c.audit("policies.overrides.write", "ok", details={
        "previous_version": before, "effective_version": effective.version,
        "files": sorted(body.overrides)})
    return OverridesRead(overrides=body.overrides, effective_version=effective.version)


@endpoint(bp, "/<version>", permission="policies.read", response=PolicyRead,
          action="policies.version.read")
def get_version(c: RequestContext, version: str) -> PolicyRead:
    """Exactly the rules behind any past decision, by the version recorded on its event."""
    if version == c.policies.version:
        return PolicyRead(version=version, content=dict(c.policies.content))
    row = c.session.get(PolicyVersion, version)
    if row is None:
        raise NotFound(f"no policy version {version!r} was ever used")
    return PolicyRead(version=row.version, content=row.content)
