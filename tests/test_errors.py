"""Bad input of every class gets the documented problem+json, never a 500, never an echo."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask

from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration
PAN = "4242424242424242"


def _problem(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith("/" + code) and body["title"]
    assert "Traceback" not in resp.get_data(as_text=True)
    assert resp.headers["X-Request-Id"] == body["request_id"]
    return body


def test_malformed_json(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().post("/v1/keys", data=b'{"roles": [', headers={
        **tenant.headers("admin"), "Content-Type": "application/json"})
    _problem(resp, 400, "malformed_json")


def test_empty_body(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().post("/v1/keys", data=b"", headers={
        **tenant.headers("admin"), "Content-Type": "application/json"})
    _problem(resp, 400, "malformed_json")


def test_body_must_be_an_object(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().post("/v1/keys", json=[1, 2], headers=tenant.headers("admin"))
    body = _problem(resp, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["body"]


def test_wrong_content_type(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().post("/v1/keys", data="roles=agent", headers={
        **tenant.headers("admin"), "Content-Type": "application/x-www-form-urlencoded"})
    _problem(resp, 415, "unsupported_media_type")


def test_unknown_field_is_named(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().post("/v1/keys", json={"roles": ["agent"], "colour": "red"},
                                  headers=tenant.headers("admin"))
    body = _problem(resp, 422, "validation_failed")
    assert body["errors"] == [{"loc": ["body", "colour"], "msg": "Extra inputs are not permitted",
                               "type": "extra_forbidden"}]


def test_sensitive_values_are_never_echoed(app: Flask, tenant: TenantKeys) -> None:
    # A card number put where it does not belong, in a wrong field and in a field of the wrong type.
    client = app.test_client()
    for payload in ({"roles": [PAN]}, {"roles": ["agent"], "label": {"pan": PAN}},
                    {"roles": ["agent"], "card_number": PAN}, {"roles": ["agent"], "expires_at": PAN}):
        resp = client.post("/v1/keys", json=payload, headers=tenant.headers("admin"))
        text = resp.get_data(as_text=True)
        assert resp.status_code == 422, text
        assert PAN not in text and "4242" not in text
        for err in resp.get_json()["errors"]:
            assert set(err) == {"loc", "msg", "type"}


def test_bad_query_parameter(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    body = _problem(client.get("/v1/audit/events?limit=0", headers=tenant.headers("auditor")),
                    422, "validation_failed")
    assert body["errors"][0]["loc"] == ["query", "limit"]
    body = _problem(client.get("/v1/audit/events?bogus=1", headers=tenant.headers("auditor")),
                    422, "validation_failed")
    assert body["errors"][0]["loc"] == ["query", "bogus"]
    body = _problem(client.get("/v1/audit/events?from=2026-01-01T00:00:00",
                               headers=tenant.headers("auditor")), 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["query", "from"]


def test_body_over_the_limit(app: Flask, tenant: TenantKeys) -> None:
    limit = app.extensions["guard"].settings.max_body_bytes
    big = json.dumps({"roles": ["agent"], "label": "x" * (limit + 10)})
    resp = app.test_client().post("/v1/keys", data=big, headers={
        **tenant.headers("admin"), "Content-Type": "application/json"})
    _problem(resp, 413, "payload_too_large")


def test_body_over_the_limit_without_content_length(app: Flask, tenant: TenantKeys) -> None:
    # A chunked body has no Content-Length: the limit must hold while reading.
    limit = app.extensions["guard"].settings.max_body_bytes
    data = b'{"roles": ["agent"], "label": "' + b"x" * (limit + 10) + b'"}'
    resp = app.test_client().post("/v1/keys", input_stream=io.BytesIO(data), headers={
        **tenant.headers("admin"), "Content-Type": "application/json",
        "Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    _problem(resp, 413, "payload_too_large")


def test_unknown_route_and_wrong_method(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    _problem(client.get("/v1/nothing-here", headers=tenant.headers("admin")), 404, "not_found")
    _problem(client.get("/", headers=tenant.headers("admin")), 404, "not_found")
    resp = client.patch("/v1/keys", headers=tenant.headers("admin"))
    _problem(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


def test_bad_actor_header(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().get("/v1/me", headers={**tenant.headers("agent"),
                                                    "X-Guard-Actor": "x" * 300})
    body = _problem(resp, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["header", "X-Guard-Actor"]


def test_actor_required_where_the_rule_is_about_people(app: Flask, tenant: TenantKeys) -> None:
    resp = app.test_client().post("/v1/keys", json={"roles": ["agent"]},
                                  headers=tenant.headers("admin", actor=None))
    body = _problem(resp, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["header", "X-Guard-Actor"]


def test_unexpected_error_is_a_bare_500(app: Flask, tenant: TenantKeys, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from guard.auth import service

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"database exploded near {PAN}")

    monkeypatch.setattr(service, "list_keys", boom)
    resp = app.test_client().get("/v1/keys", headers=tenant.headers("admin"))
    body = _problem(resp, 500, "internal_error")
    assert "exploded" not in json.dumps(body)


def test_request_id_is_echoed_when_sane(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    rid = client.get("/healthz", headers={"X-Request-Id": "<script>"}).headers["X-Request-Id"]
    assert rid.startswith("req_")
