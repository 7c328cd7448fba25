"""A dialer worker in its own process, for the record-race test (importable by spawn)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def dial(settings_values: dict[str, Any], now: str, headers: dict[str, str], bodies: list[dict[str, Any]],
         tries: int, barrier: Any, out: Any) -> None:
    """Build an app like a gunicorn worker would, wait for the others, then check-and-record."""
    from guard import create_app
    from guard.clock import FixedClock
    from guard.config import Settings

    app = create_app(Settings(**settings_values), clock=FixedClock(datetime.fromisoformat(now)))
    client = app.test_client()
    results = []
    for n, body in enumerate(bodies):
        barrier.wait(timeout=60)  # every process starts each round at the same moment
        for _ in range(tries):
            resp = client.post("/v1/calls/check", json=body, headers=headers)
            results.append((n, resp.status_code, resp.get_json().get("decision")))
    app.extensions["guard"].close()
    out.put(results)
