"""`GET /metrics`: the Prometheus text exposition."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from guard.metrics import CONTENT_TYPE, render
from guard.web import RequestContext, endpoint


def make_blueprint(*, public: bool) -> Blueprint:
    """The /metrics route; public only when the operator says the network restricts it.

    Operators usually scrape from inside their network, where an API key is one more secret to
    place on the scraper; GUARD_METRICS_PUBLIC=true allows that. Otherwise a key with
    `metrics.read` (admin, auditor) is required, and it sees only its own tenant's per-tenant
    series, next to the installation-wide counters (which carry no tenant label).
    """
    bp = Blueprint("metrics", __name__)

    # A successful scrape is not audited: it reads aggregate counters, not anyone's data, and a
    # scraper polling every 15 s would bury the tenant's trail. Refusals are audited as usual.
    @endpoint(bp, "/metrics", permission="metrics.read", public=public, action="metrics.read",
              response_media_type=CONTENT_TYPE)
    def metrics(c: RequestContext) -> Response:
        """Prometheus metrics: decisions, request latency, audit chain and job gauges."""
        tenant = c.caller.tenant_id if c.caller is not None else None
        return current_app.response_class(render(c.rt, tenant=tenant), status=200,
                                          content_type=CONTENT_TYPE)

    return bp
