"""HTML pages declared with guard.web.endpoint(html=True): own authentication, not in OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Blueprint, Flask, Response, request

import guard
from guard import create_app
from guard.config import Settings
from guard.context import Caller
from guard.errors import Unauthorized
from guard.openapi import build_openapi
from guard.web import RequestContext, endpoint

pytestmark = pytest.mark.integration

bp = Blueprint("htmltest", __name__, url_prefix="/htmltest")


def _header_auth(c: RequestContext) -> None:
    """A stand-in credential: the X-Test-Roles header names the caller's roles."""
    roles = request.headers.get("X-Test-Roles")
    if not roles:
        raise Unauthorized("no test credential", reasons=["test_missing"])
    c.caller = Caller(tenant_id="ten_system", key_id=None, role=None, roles=tuple(roles.split(",")),
                      request_id=c.request_id)


@endpoint(bp, "/page", permission="audit.read", html=True, authenticate=_header_auth)
def page(c: RequestContext) -> Response:
    """A test page."""
    assert c.caller is not None
    return Response(f"<p>role {c.caller.role}</p>", mimetype="text/html")


@endpoint(bp, "/open", public=True, html=True)
def open_page(c: RequestContext) -> Response:
    """A public test page."""
    return Response("<p>open</p>", mimetype="text/html")


@pytest.fixture
def html_app(settings: Settings, clock: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setattr(guard, "APP_BLUEPRINTS", [*guard.APP_BLUEPRINTS, "tests.test_web_html:bp"])
    app = create_app(settings, clock=clock)  # type: ignore[arg-type]
    yield app
    app.extensions["guard"].close()


def test_html_pages_are_not_in_the_openapi_document(html_app: Flask) -> None:
    paths = build_openapi(html_app)["paths"]
    assert not [p for p in paths if p.startswith("/htmltest")]
    assert "/v1/audit/events" in paths


def test_html_page_uses_its_own_authenticator_not_a_bearer_key(html_app: Flask) -> None:
    client = html_app.test_client()
    resp = client.get("/htmltest/page", headers={"X-Test-Roles": "agent,auditor"})
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == "<p>role auditor</p>"  # the role that grants it
    assert client.get("/htmltest/page").status_code == 401
    # A bearer key is not what this page accepts.
    assert client.get("/htmltest/page", headers={"Authorization": "Bearer gk_live_x"}).status_code == 401


def test_html_page_still_checks_the_permission(html_app: Flask) -> None:
    resp = html_app.test_client().get("/htmltest/page", headers={"X-Test-Roles": "agent"})
    assert resp.status_code == 403
    assert resp.get_json()["reasons"] == ["role_not_permitted"]


def test_public_html_page(html_app: Flask) -> None:
    assert html_app.test_client().get("/htmltest/open").get_data(as_text=True) == "<p>open</p>"


def test_endpoint_refuses_ambiguous_declarations() -> None:
    other = Blueprint("htmltest2", __name__)

    def view(c: RequestContext) -> Response:
        """x"""
        return Response("")

    with pytest.raises(ValueError, match="must say how it authenticates"):
        endpoint(other, "/a", permission="audit.read", html=True)(view)
    with pytest.raises(ValueError, match="only an HTML page"):
        endpoint(other, "/b", permission="audit.read", authenticate=_header_auth)(view)
