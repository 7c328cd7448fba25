"""HTTP plumbing: the endpoint decorator, per-request context, auth, parsing, problem+json."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from guard import audit
from guard.audit.service import PendingEvent
from guard.auth.service import KeyInfo, KeyRejected, authenticate
from guard.context import Caller
from guard.db import commit
from guard.errors import (
    BadRequest,
    Forbidden,
    GuardError,
    InternalError,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from guard.ids import new_id
from guard.policy import PolicySet
from guard.runtime import Runtime

log = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ACTOR_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class EndpointSpec:
    """Everything Guard knows about a route: auth, parsing, documentation."""

    permission: str | None
    public: bool
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    action: str
    summary: str
    max_body: int | None
    requires_actor: bool
    tag: str
    extra_responses: Mapping[int, str] = field(default_factory=dict)
    response_media_type: str = "application/json"
    # For views that parse their own body (several media types): media type -> model or schema,
    # documented in OpenAPI only.
    request_media: Mapping[str, type[BaseModel] | dict[str, Any]] = field(default_factory=dict)
    # An HTML page (e.g. the auditor console): left out of the OpenAPI document, and
    # authenticated by `authenticate` (its own credential, such as a session cookie) instead
    # of a bearer key; the permission check stays here.
    html: bool = False
    authenticate: Callable[[RequestContext], None] | None = None


def runtime() -> Runtime:
    """The Runtime of the current app."""
    rt = current_app.extensions["guard"]
    assert isinstance(rt, Runtime)
    return rt


class RequestContext:
    """One request's caller, lazily opened session and effective policies."""

    def __init__(self, rt: Runtime, request_id: str, spec: EndpointSpec | None) -> None:
        self.rt = rt
        self.request_id = request_id
        self.spec = spec
        self.caller: Caller | None = None
        self.clock = rt.clock
        self._session: Session | None = None
        self._policies: PolicySet | None = None
        self.denial_recorded = False
        self.key_info: KeyInfo | None = None

    @property
    def session(self) -> Session:
        """The request's session (one transaction, committed once by the endpoint wrapper)."""
        if self._session is None:
            self._session = self.rt.sessions()
        return self._session

    @property
    def tenant_id(self) -> str:
        """The caller's tenant (from the key, never from the request)."""
        assert self.caller is not None
        return self.caller.tenant_id

    @property
    def policies(self) -> PolicySet:
        """The tenant's effective policy set."""
        if self._policies is None:
            self._policies = self.rt.policies_for(self.session, self.tenant_id)
        return self._policies

    def audit(self, action: str, outcome: audit.service.Outcome, *, reasons: list[str] | None = None,
              subject: str | None = None, details: Mapping[str, Any] | None = None) -> PendingEvent:
        """Queue an audit event for this request in the request's transaction."""
        assert self.caller is not None
        return audit.service.append(
            self.session, caller=self.caller, action=action, outcome=outcome, clock=self.clock,
            reasons=reasons or [], policy=self.policies, subject=subject, details=details)

    def commit(self) -> None:
        """Commit the request's transaction (with its audit events)."""
        if self._session is not None:
            commit(self._session)

    def rollback(self) -> None:
        """Roll back and forget queued audit events."""
        if self._session is not None:
            audit.service.discard_pending(self._session)
            self._session.rollback()

    def close(self) -> None:
        """Return the connection to the pool."""
        if self._session is not None:
            self._session.close()
            self._session = None


def ctx() -> RequestContext:
    """The current request's context."""
    c = g.get("guard_ctx")
    assert isinstance(c, RequestContext)
    return c


ViewResult = BaseModel | Response | tuple[BaseModel, int] | tuple[BaseModel, int, dict[str, str]]


def endpoint(
    bp: Blueprint,
    rule: str,
    *,
    methods: tuple[str, ...] = ("GET",),
    permission: str | None = None,
    public: bool = False,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    action: str | None = None,
    max_body: int | None = None,
    requires_actor: bool = False,
    extra_responses: Mapping[int, str] | None = None,
    response_media_type: str = "application/json",
    request_media: Mapping[str, type[BaseModel] | dict[str, Any]] | None = None,
    html: bool = False,
    authenticate: Callable[[RequestContext], None] | None = None,
) -> Callable[[Callable[..., ViewResult]], Callable[..., Response]]:
    """Register a view: authenticated by default, body/query parsed with pydantic, one commit."""
    if not public and not permission:
        raise ValueError(f"{rule}: a non-public route must name a permission")
    if authenticate is not None and not html:
        raise ValueError(f"{rule}: only an HTML page may authenticate by other means than a key")
    if html and not public and authenticate is None:
        raise ValueError(f"{rule}: a non-public HTML page must say how it authenticates")

    def deco(fn: Callable[..., ViewResult]) -> Callable[..., Response]:
        spec = EndpointSpec(
            permission=permission, public=public, body=body, query=query, response=response,
            status=status, action=action or f"{bp.name}.{fn.__name__}",
            summary=(fn.__doc__ or fn.__name__).strip().splitlines()[0], max_body=max_body,
            requires_actor=requires_actor, tag=bp.name, extra_responses=dict(extra_responses or {}),
            response_media_type=response_media_type, request_media=dict(request_media or {}),
            html=html, authenticate=authenticate)

        @functools.wraps(fn)
        def view(**path_args: Any) -> Response:
            c = ctx()
            kwargs = dict(path_args)
            if body is not None:
                kwargs["body"] = parse_body(body)
            if query is not None:
                kwargs["query"] = parse_query(query)
            # A streaming view commits its own audit event before it returns; its generator
            # opens sessions of its own, so the request's session always ends here.
            try:
                result = fn(c, **kwargs)
                c.commit()
            except BaseException:
                c.rollback()
                raise
            finally:
                c.close()
            return to_response(result, status)

        view.guard_spec = spec  # type: ignore[attr-defined]
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=list(methods))
        return view

    return deco


def to_response(result: ViewResult, default_status: int) -> Response:
    """Serialize a view's result."""
    if isinstance(result, Response):
        return result
    headers: dict[str, str] = {}
    status = default_status
    if isinstance(result, tuple):
        model, status, *rest = result
        headers = rest[0] if rest else {}
    else:
        model = result
    return json_response(model.model_dump(mode="json"), status, headers)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  mimetype: str = "application/json") -> Response:
    """A JSON response with the request id header."""
    resp = current_app.response_class(json.dumps(data, separators=(",", ":")), status=status,
                                      mimetype=mimetype)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _validation_errors(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    # pydantic puts the offending input (and ctx) in each error: keep only loc, msg and type so
    # no card number or code is ever echoed back.
    return [{"loc": [prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False, include_context=False)]


def parse_body(model: type[BaseModel]) -> BaseModel:
    """Parse the JSON body into `model`; 415, 400 or 422 problem+json on bad input."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType()
    limit = request.max_content_length
    if request.content_length is None and limit is not None \
            and request.environ.get("wsgi.input_terminated"):
        # A chunked body has no Content-Length, and werkzeug would silently cut it at the limit
        # (a truncated body could even parse): read one byte past the limit to tell.
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is over {limit} bytes")
    else:
        raw = request.get_data(cache=False)
    if not raw:
        raise MalformedJson("request body is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_input=False)):
            raise MalformedJson() from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors(include_input=False)):
            raise ValidationFailed([{"loc": ["body"], "msg": "body must be a JSON object",
                                     "type": "model_type"}]) from None
        raise ValidationFailed(_validation_errors(exc, "body")) from None


def parse_query(model: type[BaseModel]) -> BaseModel:
    """Parse query parameters into `model` (unknown parameters are refused)."""
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(_validation_errors(exc, "query")) from None


# ----------------------------------------------------------------------------- hooks


def _spec_for_request() -> EndpointSpec | None:
    if request.url_rule is None:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "guard_spec", None)


def client_source() -> str:
    """The client's address (X-Forwarded-For only when the operator says a proxy sets it)."""
    if runtime().settings.trust_forwarded_for:
        fwd = request.headers.get("X-Forwarded-For", "")
        if fwd:
            return fwd.split(",")[0].strip()[:64]
    return (request.remote_addr or "unknown")[:64]


def before_request() -> None:
    """Request id, body limit, then authentication and authorization (deny by default)."""
    rid = request.headers.get("X-Request-Id", "")
    rt = runtime()
    spec = _spec_for_request()
    c = RequestContext(rt, rid if _REQUEST_ID_RE.match(rid) else new_id("req"), spec)
    g.guard_ctx = c
    if spec is None:
        return  # unknown route or method: Flask raises 404/405, rendered as problem+json
    limit = spec.max_body or rt.settings.max_body_bytes
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is over {limit} bytes")
    if spec.public:
        return
    if spec.authenticate is not None:
        spec.authenticate(c)  # sets c.caller from the page's own credential, or raises
        authorize(c, spec)
        return
    actor = request.headers.get("X-Guard-Actor")
    if actor is not None and not _ACTOR_RE.match(actor):
        raise ValidationFailed([{"loc": ["header", "X-Guard-Actor"],
                                 "msg": "1-128 printable ASCII characters"}])
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <API key>", reasons=["key_missing"])
    try:
        info = authenticate(c.session, token.strip(), pepper=rt.keyring.current("api_key_pepper").material,
                            now=rt.clock.now(), cache=rt.key_cache)
        c.key_info = info
    except KeyRejected as exc:
        c.caller = Caller(tenant_id=exc.info.tenant_id, key_id=exc.info.key_id, role=None,
                          roles=exc.info.roles, actor=actor, request_id=c.request_id,
                          source=client_source())
        raise
    except Unauthorized:
        from guard.auth.failures import count_unknown_key

        count_unknown_key(rt, client_source())
        raise
    finally:
        # The key lookup's read transaction must not stay open (SQLite: it holds the lock).
        c.session.rollback()
    # The caller's tenant is known now; the role is the first of the key's roles that grants
    # the route's permission (recorded on every audit event of this request).
    c.caller = Caller(tenant_id=info.tenant_id, key_id=info.key_id, role=None, roles=info.roles,
                      actor=actor, request_id=c.request_id, source=client_source())
    authorize(c, spec)


def authorize(c: RequestContext, spec: EndpointSpec) -> None:
    """Pick the first of the caller's roles that grants the route's permission, or refuse (403)."""
    assert c.caller is not None and spec.permission is not None
    roles = c.caller.roles
    role = next((r for r in roles if c.policies.roles.allows(r, spec.permission)), None)
    c.caller = dataclasses.replace(c.caller, role=role or (roles[0] if roles else None))
    c.session.rollback()
    if role is None:
        raise Forbidden(f"roles {', '.join(roles)} may not {spec.permission}",
                        reasons=["role_not_permitted"])
    if spec.requires_actor and not c.caller.actor:
        raise ValidationFailed([{"loc": ["header", "X-Guard-Actor"],
                                 "msg": "this action must name the person or AI agent acting"}])


def after_request(resp: Response) -> Response:
    """Request id on every response; no caching of API answers."""
    c = g.get("guard_ctx")
    if c is not None:
        resp.headers["X-Request-Id"] = c.request_id
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


def teardown_request(_exc: BaseException | None) -> None:
    """Never leak a connection, whatever happened."""
    c = g.get("guard_ctx")
    if c is not None:
        c.rollback()
        c.close()


# ----------------------------------------------------------------------------- errors


def record_denial(c: RequestContext, err: GuardError) -> None:
    """Audit a refused request in a transaction of its own (after the request rolled back)."""
    if c.caller is None or c.denial_recorded or not err.audited:
        return
    c.denial_recorded = True
    action = c.spec.action if c.spec else "http.request"
    if isinstance(err, KeyRejected):
        action = "auth.key.rejected"
    session = c.rt.sessions()
    try:
        try:
            policies: PolicySet | None = c.rt.policies_for(session, c.caller.tenant_id)
        except GuardError:
            policies = c.rt.policies.base
        outcome: audit.service.Outcome = "error" if err.status >= 500 else "deny"
        audit.service.append(session, caller=c.caller, action=action, outcome=outcome,
                             clock=c.rt.clock, reasons=err.reasons or [err.code], policy=policies,
                             details={"status": err.status, "error_code": err.code,
                                      "method": request.method, "route": request.url_rule.rule
                                      if request.url_rule else None})
        commit(session)
    except Exception:
        session.rollback()
        log.exception("could not record the audit event of a refused request")
        raise
    finally:
        session.close()


def problem_response(err: GuardError) -> Response:
    """Render a GuardError as application/problem+json."""
    body = err.problem()
    c = g.get("guard_ctx")
    if c is not None:
        body["request_id"] = c.request_id
    resp = json_response(body, err.status, mimetype=PROBLEM_JSON)
    if err.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="guard"'
    retry_after = getattr(err, "retry_after", None)  # rate limits (429) say when to come back
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def refusal_recorded(err: GuardError) -> bool:
    """Roll back the request and audit its refusal in a transaction of its own.

    False when the audit event could not be written (logged by record_denial): the caller must
    then fail closed with a 503 rather than answer as if the refusal were on record.
    """
    c = g.get("guard_ctx")
    if c is None:
        return True
    c.rollback()
    try:
        record_denial(c, err)
    except Exception:  # noqa: BLE001 - logged in record_denial
        return False
    return True


def handle_guard_error(err: GuardError) -> Response:
    """Audit the denial in its own transaction, then render it as problem+json."""
    if not refusal_recorded(err):
        from guard.errors import ServiceUnavailable

        return problem_response(ServiceUnavailable("could not record the audit event"))
    return problem_response(err)


_HTTP_MAP: dict[int, type[GuardError]] = {
    400: BadRequest, 404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def handle_http_exception(exc: HTTPException) -> Response:
    """Werkzeug's HTTP errors (unknown route, wrong method, too large) as problem+json."""
    cls = _HTTP_MAP.get(exc.code or 500)
    if cls is None:
        err: GuardError = GuardError(exc.description or "error")
        err.status = exc.code or 500  # type: ignore[misc]
        err.code = f"http_{exc.code}"  # type: ignore[misc]
    elif cls is PayloadTooLarge:
        err = PayloadTooLarge(f"request body is over {request.max_content_length} bytes")
    else:
        err = cls()
    resp = problem_response(err)
    if isinstance(err, MethodNotAllowed) and getattr(exc, "valid_methods", None):
        resp.headers["Allow"] = ", ".join(exc.valid_methods or [])  # type: ignore[attr-defined]
    return resp


def handle_unexpected(exc: Exception) -> Response:
    """Anything unforeseen: log it (masked) with the request id; the client gets no details."""
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    log.exception("unhandled error")
    c = g.get("guard_ctx")
    if c is not None:
        c.rollback()
        try:
            record_denial(c, InternalError())
        except Exception:
            log.exception("could not audit an internal error")
    return problem_response(InternalError("an internal error occurred; quote the request id"))


def install(app: Flask) -> None:
    """Register the hooks and error handlers on an app."""
    app.before_request(before_request)
    app.after_request(after_request)
    app.teardown_request(teardown_request)
    app.register_error_handler(GuardError, handle_guard_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)


__all__ = ["RequestContext", "ctx", "endpoint", "install", "runtime"]
