"""API-key routes: who am I, list, create and revoke keys (admin)."""

from __future__ import annotations

from flask import Blueprint

from guard.auth import service
from guard.auth.models import ApiKey
from guard.auth.schemas import KeyCreate, KeyCreated, KeyList, KeyRead, WhoAmI
from guard.web import RequestContext, endpoint

bp = Blueprint("auth", __name__)


def _read(key: ApiKey) -> KeyRead:
    return KeyRead.model_validate(key, from_attributes=True)


@endpoint(bp, "/me", permission="tenant.read", response=WhoAmI, action="auth.whoami")
def whoami(c: RequestContext) -> WhoAmI:
    """The tenant, key and roles behind this request's API key."""
    assert c.caller is not None and c.caller.key_id is not None and c.key_info is not None
    # Everything here comes from the (briefly cached) key lookup: no database work per call.
    return WhoAmI(tenant_id=c.tenant_id, tenant_name=c.key_info.tenant_name, key_id=c.caller.key_id,
                  roles=list(c.caller.roles), actor=c.caller.actor,
                  policy_version=c.policies.version)


@endpoint(bp, "/keys", permission="keys.read", response=KeyList, action="auth.key.list")
def list_keys(c: RequestContext) -> KeyList:
    """This tenant's API keys (ids, roles, expiry, revocation; never secrets)."""
    return KeyList(keys=[_read(k) for k in service.list_keys(c.session, c.tenant_id)])


@endpoint(bp, "/keys", methods=("POST",), permission="keys.manage", body=KeyCreate,
          response=KeyCreated, status=201, action="auth.key.create", requires_actor=True)
def create_key(c: RequestContext, body: KeyCreate) -> KeyCreated:
    """Create an API key for this tenant; the key text is in this response only."""
    key, token = service.create_key(
        c.session, tenant_id=c.tenant_id, roles=body.roles,
        pepper=c.rt.keyring.current("api_key_pepper").material, clock=c.clock,
        environment=body.environment, expires_at=body.expires_at, label=body.label)
    c.audit("auth.key.create", "ok", details={"created_key_id": key.id, "roles": key.roles,
                                              "expires_at": body.expires_at.isoformat()
                                              if body.expires_at else None})
    return KeyCreated(**_read(key).model_dump(), key=token)


@endpoint(bp, "/keys/<key_id>", methods=("DELETE",), permission="keys.manage", response=KeyRead,
          action="auth.key.revoke", requires_actor=True)
def revoke_key(c: RequestContext, key_id: str) -> KeyRead:
    """Revoke an API key of this tenant, effective immediately."""
    key = service.revoke_key(c.session, key_id, clock=c.clock, tenant_id=c.tenant_id,
                             cache=c.rt.key_cache)
    c.audit("auth.key.revoke", "ok", details={"revoked_key_id": key.id})
    return _read(key)
