"""Policies as data: policies/*.yaml loaded into frozen pydantic models; version = content hash.

Each file stem maps to one model in POLICY_MODELS. A file without a model, a model without a
file, or a value the model refuses stops start-up with the file and the field named.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guard.errors import ConfigError, ValidationFailed

ROLE_NAMES = ("agent", "ai_agent", "dialer", "supervisor", "auditor", "privacy_officer", "admin")
Role = Literal["agent", "ai_agent", "dialer", "supervisor", "auditor", "privacy_officer", "admin"]
_PERMISSION_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


class PolicyModel(BaseModel):
    """Base of every policy file model: frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Whether a tenant may override values (within the bounds the model's validators allow).
    tenant_overridable: ClassVar[bool] = False


class RoleDef(PolicyModel):
    """What one role may do."""

    description: str
    permissions: frozenset[str]


class RolesPolicy(PolicyModel):
    """policies/roles.yaml: role -> permissions, deny by default."""

    roles: dict[Role, RoleDef]
    # Permissions that a role may never hold, whatever the file says (e.g. AI agents never
    # approve anything). Patterns use a trailing or leading `*`.
    never: dict[Role, frozenset[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> RolesPolicy:
        missing = [r for r in ROLE_NAMES if r not in self.roles]
        if missing:
            raise ValueError(f"roles missing: {', '.join(missing)}")
        for role, rdef in self.roles.items():
            for perm in rdef.permissions:
                if not _PERMISSION_RE.match(perm):
                    raise ValueError(f"roles.{role}: permission {perm!r} is not dotted lowercase")
            for pattern in self.never.get(role, frozenset()):
                bad = [p for p in rdef.permissions if _matches(pattern, p)]
                if bad:
                    raise ValueError(f"roles.{role}: may never hold {', '.join(sorted(bad))}")
        return self

    def allows(self, role: str, permission: str) -> bool:
        """Whether `role` holds `permission`."""
        rdef = self.roles.get(role)  # type: ignore[call-overload]
        return rdef is not None and permission in rdef.permissions

    def all_permissions(self) -> frozenset[str]:
        """Every permission any role holds."""
        out: set[str] = set()
        for rdef in self.roles.values():
            out |= rdef.permissions
        return frozenset(out)


def _matches(pattern: str, permission: str) -> bool:
    if pattern.startswith("*"):
        return permission.endswith(pattern[1:])
    if pattern.endswith("*"):
        return permission.startswith(pattern[:-1])
    return pattern == permission


class AuditPolicy(PolicyModel):
    """policies/audit.yaml: audit-log retention and read limits."""

    tenant_overridable: ClassVar[bool] = True

    # PCI DSS v4.0 10.5.1: retain audit log history for at least 12 months, with at least the
    # most recent three months immediately available for analysis.
    retention_days: int = Field(ge=365, le=36500)
    online_days: int = Field(ge=90, le=36500)
    page_max: int = Field(ge=10, le=10000)

    @model_validator(mode="after")
    def _online_within_retention(self) -> AuditPolicy:
        if self.online_days > self.retention_days:
            raise ValueError("online_days cannot exceed retention_days")
        return self


# File stem -> "module:Class". Domain packages add their files here.
POLICY_MODELS: dict[str, str] = {
    "roles": "guard.policy:RolesPolicy",
    "audit": "guard.policy:AuditPolicy",
    "vault": "guard.pci.policy:VaultPolicy",
    "identity": "guard.auth.verify_policy:IdentityPolicy",
    "outbound": "guard.tcpa.policy:OutboundPolicy",
    "console": "guard.console.policy:ConsolePolicy",
}


def _model_for(name: str) -> type[PolicyModel]:
    module, _, cls = POLICY_MODELS[name].partition(":")
    model = getattr(importlib.import_module(module), cls)
    assert isinstance(model, type) and issubclass(model, PolicyModel)
    return model


def canonical_json(data: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (used for hashes)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, frozenset | set):
        return sorted(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@dataclass(frozen=True)
class PolicySet:
    """One immutable set of policies, identified by the hash of its content."""

    models: Mapping[str, PolicyModel]
    version: str
    content: Mapping[str, Any] = field(repr=False)

    @property
    def roles(self) -> RolesPolicy:
        """The roles policy."""
        m = self.models["roles"]
        assert isinstance(m, RolesPolicy)
        return m

    @property
    def audit(self) -> AuditPolicy:
        """The audit policy."""
        m = self.models["audit"]
        assert isinstance(m, AuditPolicy)
        return m

    def get(self, name: str) -> PolicyModel:
        """The model for policy file `name`."""
        return self.models[name]

    @classmethod
    def build(cls, raw: Mapping[str, Any], *, origin: str = "policies") -> PolicySet:
        """Validate raw dicts (file stem -> content) into a PolicySet; ConfigError names the field."""
        models: dict[str, PolicyModel] = {}
        for name in sorted(POLICY_MODELS):
            if name not in raw:
                raise ConfigError(f"{origin}/{name}.yaml: missing policy file")
            try:
                models[name] = _model_for(name).model_validate(raw[name])
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                raise ConfigError(f"{origin}/{name}.yaml: {where}: {err['msg']}") from None
        unknown = sorted(set(raw) - set(POLICY_MODELS))
        if unknown:
            raise ConfigError(f"{origin}/{unknown[0]}.yaml: no policy model reads this file")
        content = {n: m.model_dump(mode="json") for n, m in models.items()}
        version = hashlib.sha256(canonical_json(content)).hexdigest()[:32]
        return cls(models=models, version=version, content=content)


def load_policy_dir(path: Path) -> PolicySet:
    """Load every policies/*.yaml with yaml.safe_load and validate it."""
    if not path.is_dir():
        raise ConfigError(f"GUARD_POLICIES_DIR: {path} is not a directory")
    raw: dict[str, Any] = {}
    for file in sorted(path.glob("*.y*ml")):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: top level must be a mapping")
        raw[file.stem] = data
    return PolicySet.build(raw, origin=str(path))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base` recursively (mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(base: PolicySet, overrides: Mapping[str, Mapping[str, Any]]) -> PolicySet:
    """A tenant's effective PolicySet; ValidationFailed if an override leaves the model's bounds."""
    if not overrides:
        return base
    raw = dict(base.content)
    for name, patch in overrides.items():
        if name not in POLICY_MODELS:
            raise ValidationFailed([{"loc": ["body", name], "msg": "unknown policy"}])
        if not _model_for(name).tenant_overridable:
            raise ValidationFailed([{"loc": ["body", name], "msg": "tenants may not override this policy"}])
        raw[name] = deep_merge(raw[name], patch)
    try:
        return PolicySet.build(raw, origin="tenant-overrides")
    except ConfigError as exc:
        # PolicySet.build names the file and field; surface it as a 422 for the API caller.
        msg = str(exc).removeprefix("tenant-overrides/")
        name, _, rest = msg.partition(".yaml: ")
        loc, _, detail = rest.partition(": ")
        raise ValidationFailed([{"loc": ["body", name, *loc.split(".")], "msg": detail}]) from None


class PolicyStore:
    """The active base PolicySet plus per-tenant effective sets, cached briefly."""

    CACHE_SECONDS = 1.0

    def __init__(self, base: PolicySet) -> None:
        self.base = base
        self._cache: dict[str, tuple[float, PolicySet]] = {}
        self._lock = threading.Lock()

    def cached(self, tenant_id: str) -> PolicySet | None:
        """A tenant's effective set if fetched within the last second."""
        with self._lock:
            hit = self._cache.get(tenant_id)
        if hit and time.monotonic() - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        return None

    def remember(self, tenant_id: str, pset: PolicySet) -> None:
        """Cache a tenant's effective set."""
        with self._lock:
            self._cache[tenant_id] = (time.monotonic(), pset)

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's cached set (after its overrides change)."""
        with self._lock:
            self._cache.pop(tenant_id, None)
