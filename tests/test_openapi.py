"""The OpenAPI document validates as 3.1 and lists every route in the URL map."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from openapi_spec_validator import validate

pytestmark = pytest.mark.integration


def test_openapi_is_valid_and_complete(app: Flask) -> None:
    resp = app.test_client().get("/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule.rule)
        html = app.view_functions[rule.endpoint].guard_spec.html
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            if html:  # HTML pages (the console) are not API operations
                assert path not in doc["paths"], f"HTML page {path} is in the API document"
                continue
            assert (method, path) in listed, f"{method} {path} is not documented"
    assert len(listed) == sum(len((r.methods or set()) - {"HEAD", "OPTIONS"})
                              for r in app.url_map.iter_rules()
                              if not app.view_functions[r.endpoint].guard_spec.html)


def test_operations_describe_bodies_and_problems(app: Flask) -> None:
    doc = app.test_client().get("/v1/openapi.json").get_json()
    create = doc["paths"]["/v1/keys"]["post"]
    schema_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = schema_ref.rsplit("/", 1)[-1]
    assert doc["components"]["schemas"][name]["additionalProperties"] is False
    assert "201" in create["responses"]
    for status in ("401", "403", "413", "415", "422"):
        content = create["responses"][status]["content"]
        assert "application/problem+json" in content
    events = doc["paths"]["/v1/audit/events"]["get"]
    names = {p["name"] for p in events["parameters"]}
    assert {"from", "to", "action", "actor", "outcome", "subject", "cursor", "limit"} <= names
    assert doc["paths"]["/healthz"]["get"]["security"] == []
