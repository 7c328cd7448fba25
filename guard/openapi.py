"""OpenAPI 3.1 document built from the URL map and each route's pydantic models.

pydantic v2 already emits JSON Schema 2020-12, which is OpenAPI 3.1's schema dialect, so a
thin layer over `models_json_schema` describes every route exactly as it validates; a
framework (flask-smorest, spectree) would add a second validation path to keep in sync.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from guard import __version__
from guard.errors import problem_schema
from guard.web import PROBLEM_JSON, EndpointSpec, RequestContext, endpoint, json_response

bp = Blueprint("openapi", __name__)
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")

_PROBLEMS = {
    400: "Malformed request (e.g. body is not JSON)",
    401: "Missing, unknown, revoked or expired API key",
    403: "The key's roles do not permit this action, or a rule refused it",
    404: "No such object in this tenant",
    413: "Request body too large",
    415: "Content-Type is not application/json",
    422: "Validation failed; `errors` names each field",
    500: "Internal error (no details; quote the request id)",
}


def build_openapi(app: Flask) -> dict[str, Any]:
    """Describe every route in the app's URL map."""
    specs: list[tuple[str, str, EndpointSpec]] = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions.get(rule.endpoint), "guard_spec", None)
        if spec is None or spec.html:
            continue  # HTML pages (the console) are not part of the API
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            specs.append((rule.rule, method, spec))
    models: set[type[BaseModel]] = set()
    for _, _, s in specs:
        models.update(m for m in (s.body, s.response) if m is not None)
        models.update(m for m in s.request_media.values() if isinstance(m, type))
    key_map, defs = models_json_schema(
        [(m, "validation" if _is_request(m, specs) else "serialization") for m in
         sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = problem_schema()

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return key_map[(model, mode)]  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for rule_text, method, s in specs:
        path = _CONVERTER.sub(r"{\1}", rule_text)
        op: dict[str, Any] = {
            "operationId": f"{s.action}.{method.lower()}" if method != "GET" else s.action,
            "summary": s.summary,
            "tags": [s.tag],
            "responses": {},
        }
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _CONVERTER.findall(rule_text)]
        if s.query is not None:
            qschema = s.query.model_json_schema(by_alias=True)
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required,
                               "schema": _inline(prop, qschema)})
        if not s.public:
            params.append({"name": "X-Guard-Actor", "in": "header", "required": s.requires_actor,
                           "description": "the person or AI agent acting, in your own systems",
                           "schema": {"type": "string", "maxLength": 128}})
        if params:
            op["parameters"] = params
        if s.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(s.body, "validation")}}}
        elif s.request_media:
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": ref(m, "validation") if isinstance(m, type) else m}
                for media, m in s.request_media.items()}}
        ok: dict[str, Any] = {"description": "OK"}
        if s.response is not None:
            ok["content"] = {s.response_media_type: {"schema": ref(s.response, "serialization")}}
        op["responses"][str(s.status)] = ok
        for status, desc in s.extra_responses.items():
            op["responses"][str(status)] = {"description": desc}
        codes = {400, 404, 500} if s.public else {400, 401, 403, 404, 500}
        if s.body is not None or s.request_media:
            codes |= {413, 415, 422}
        if s.query is not None or (not s.public):
            codes.add(422)
        for status in sorted(codes):
            op["responses"].setdefault(str(status), {
                "description": _PROBLEMS[status],
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
        if s.public:
            op["security"] = []
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Guard", "version": __version__,
                 "description": "Compliance and payment-handling middleware for contact centers."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "gk_live_... or gk_test_... API key"}},
        },
        "security": [{"apiKey": []}],
    }


def _is_request(model: type[BaseModel], specs: list[tuple[str, str, EndpointSpec]]) -> bool:
    return any(s.body is model or model in s.request_media.values() for _, _, s in specs)


def _inline(prop: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Resolve a query property's local $ref (query schemas are inlined as parameters)."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return dict(root.get("$defs", {}).get(name, {}))
    if "anyOf" in prop:
        return {**prop, "anyOf": [_inline(p, root) for p in prop["anyOf"]]}
    return prop


@endpoint(bp, "/v1/openapi.json", public=True)
def openapi(c: RequestContext) -> Any:
    """The OpenAPI 3.1 description of this API."""
    from flask import current_app

    doc = current_app.extensions.get("guard_openapi")
    if doc is None:
        doc = current_app.extensions["guard_openapi"] = build_openapi(current_app)
    return json_response(doc)
