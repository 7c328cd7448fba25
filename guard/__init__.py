"""Guard: compliance and payment-handling middleware for contact centers."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flask import Flask

    from guard.clock import Clock
    from guard.config import Settings

# Blueprints mounted under /v1, as "module:attribute". Domain packages add theirs here.
V1_BLUEPRINTS = [
    "guard.auth.api:bp",
    "guard.auth.verify_api:bp",
    "guard.audit.api:bp",
    "guard.policy_api:bp",
    "guard.pci.api:bp",
    "guard.tcpa.api:bp",
]
# Blueprints mounted at the root (their own url_prefix), e.g. HTML pages outside the API.
APP_BLUEPRINTS: list[str] = ["guard.console.views:bp"]


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the Flask app: settings, logging, runtime, routes, error handlers. Nothing at import."""
    import importlib

    from flask import Blueprint, Flask

    from guard import health, metrics, metrics_api, openapi, web
    from guard.config import load_settings
    from guard.errors import ConfigError
    from guard.logs import configure_logging
    from guard.runtime import build_runtime

    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_json)
    rt = build_runtime(settings, clock=clock)
    app = Flask("guard", static_folder=None)
    # The largest body any route accepts; each route narrows it in web.before_request.
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_body_bytes, settings.max_batch_body_bytes)
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    app.extensions["guard"] = rt
    web.install(app)
    metrics.install(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics_api.make_blueprint(public=settings.metrics_public))
    app.register_blueprint(openapi.bp)
    v1 = Blueprint("v1", __name__, url_prefix="/v1")
    for target in V1_BLUEPRINTS:
        module, _, attr = target.partition(":")
        v1.register_blueprint(getattr(importlib.import_module(module), attr))
    app.register_blueprint(v1)
    for target in APP_BLUEPRINTS:
        module, _, attr = target.partition(":")
        app.register_blueprint(getattr(importlib.import_module(module), attr))
    granted = rt.policies.base.roles.all_permissions()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        spec = getattr(app.view_functions[rule.endpoint], "guard_spec", None)
        if spec is None:
            raise ConfigError(f"route {rule.rule} was not declared with guard.web.endpoint")
        if spec.permission and spec.permission not in granted:
            raise ConfigError(f"roles.yaml: no role holds {spec.permission!r} (route {rule.rule})")
    return app
