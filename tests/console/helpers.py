"""Console test helpers: sign in through the real form, read hidden CSRF fields."""

from __future__ import annotations

import re
from typing import Any

from guard.audit import proofs, service
from guard.context import operator
from guard.db import transaction
from guard.runtime import Runtime

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    m = CSRF_RE.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(client: Any, token: str, actor: str = "Ada Auditor", **kw: Any) -> Any:
    """GET the sign-in form, then POST it (the test client keeps the cookies)."""
    form = client.get("/console/login", **kw)
    return client.post("/console/login", data={"csrf": csrf_of(form.get_data(as_text=True)),
                                               "api_key": token, "actor": actor}, **kw)


def add_event(rt: Runtime, tenant_id: str, *, action: str = "test.event", outcome: str = "ok",
              reasons: list[str] | None = None, details: dict[str, Any] | None = None) -> str:
    """Append one committed event; returns its id."""
    with transaction(rt.sessions) as s:
        ev = service.append(s, caller=operator(tenant_id), action=action, outcome=outcome,  # type: ignore[arg-type]
                            clock=rt.clock, reasons=reasons or [], policy=rt.policies.base,
                            details=details)
    return ev.id


def checkpoint(rt: Runtime, tenant_id: str) -> int:
    """Verify and sign a checkpoint now; returns its tree size."""
    with transaction(rt.sessions) as s:
        res = service.verify(s, tenant_id, clock=rt.clock)
        assert res.ok, res.message
        cp = proofs.create_checkpoint(s, tenant_id, keyring=rt.keyring, clock=rt.clock,
                                      verified_through=res.verified_through)
    return cp.tree_size
