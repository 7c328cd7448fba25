"""Who is acting: passed from the HTTP or CLI layer into services (which never import flask)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The tool (API key), role and person behind one request or command."""

    tenant_id: str
    key_id: str | None
    role: str | None
    roles: tuple[str, ...] = ()
    actor: str | None = None
    request_id: str | None = None
    source: str | None = None


def operator(tenant_id: str, request_id: str | None = None) -> Caller:
    """The caller for an operator's CLI command or a background job."""
    return Caller(tenant_id=tenant_id, key_id=None, role="operator", actor="cli",
                  request_id=request_id)
