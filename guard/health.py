"""Liveness and readiness probes (public)."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import text

from guard.schemas import Response
from guard.web import RequestContext, endpoint, json_response

bp = Blueprint("health", __name__)

# Domain readiness reports, as "module:function": each takes the Runtime and returns
# (name, status text, ready). Domain packages add theirs.
READY_CHECKS: list[str] = ["guard.tcpa.health:holidays_ready"]


class Health(Response):
    """Probe result."""

    status: str
    checks: dict[str, str] = {}


@endpoint(bp, "/healthz", public=True, response=Health)
def healthz(c: RequestContext) -> Health:
    """The process is up."""
    return Health(status="ok")


@endpoint(bp, "/readyz", public=True, response=Health, extra_responses={503: "not ready"})
def readyz(c: RequestContext) -> Health:
    """Database reachable, migrations at head, policies loaded; 503 otherwise."""
    from guard.migrate import current_revisions, head_revisions

    checks: dict[str, str] = {}
    try:
        with c.rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = current_revisions(conn)
        checks["database"] = "ok"
        heads = head_revisions()
        checks["migrations"] = "ok" if current == heads else \
            f"at {sorted(current) or 'none'}, head is {sorted(heads)}"
    except Exception as exc:  # noqa: BLE001 - readiness reports, it never raises
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["policies"] = f"ok ({c.rt.policies.base.version})"
    ready = checks.get("database") == "ok" and checks.get("migrations") == "ok"
    for target in READY_CHECKS:
        import importlib

        module, _, attr = target.partition(":")
        try:
            name, status, ok = getattr(importlib.import_module(module), attr)(c.rt)
        except Exception as exc:  # noqa: BLE001 - readiness reports, it never raises
            name, status, ok = target, f"error: {type(exc).__name__}", False
        checks[name] = status
        ready = ready and ok
    health = Health(status="ok" if ready else "unavailable", checks=checks)
    if not ready:
        return json_response(health.model_dump(), 503)  # type: ignore[return-value]
    return health
