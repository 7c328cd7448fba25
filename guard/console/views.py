"""Console pages: sign-in, status, event search, one event, a policy version.

Read-only HTML for auditors, supervisors and privacy officers. A pasted API key is exchanged
for a server-side session; the browser holds only a random HttpOnly, SameSite=Strict cookie.
Every page view is an audit event, as API reads are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy import select, update

from guard.audit import proofs
from guard.audit import service as audit_service
from guard.audit.models import AuditEvent
from guard.audit.schemas import EventQuery
from guard.auth.failures import count_unknown_key
from guard.auth.service import KeyRejected, authenticate
from guard.console import chart, panels
from guard.console import service as cs
from guard.console.models import ConsoleSession
from guard.console.policy import ConsolePolicy
from guard.context import Caller
from guard.db import transaction
from guard.errors import Forbidden, GuardError, NotFound, Unauthorized, ValidationFailed
from guard.models import PolicyVersion
from guard.web import RequestContext, ViewResult, client_source, ctx, endpoint, refusal_recorded

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")

PERMISSION = "console.read"
SESSION_COOKIE = "guard_console"
LOGIN_COOKIE = "guard_console_login"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
_ACTOR_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")
_CSS = Path(__file__).with_name("static") / "console.css"
_ENDED = {
    "session_idle": "Your session was idle too long. Sign in again.",
    "session_expired": "Your session reached its maximum length. Sign in again.",
    "key_revoked": "The API key behind your session was revoked.",
    "key_expired": "The API key behind your session expired.",
    "key_unknown": "The API key behind your session no longer exists.",
    "signed_out": "You are signed out.",
}


class SignInRequired(Unauthorized):
    """No usable session: the browser is sent to the sign-in page."""


class SessionEnded(SignInRequired):
    """A session that existed but may no longer be used (audited: the caller is known)."""

    audited = True


def _policy(c: RequestContext) -> ConsolePolicy:
    pol = c.rt.policies.base.get("console")
    assert isinstance(pol, ConsolePolicy)
    return pol


def _csrf_secret(c: RequestContext) -> bytes:
    # Derived from the API-key pepper under its own label, so no new keyring entry has to be
    # created (and raced for) by several workers.
    return cs.csrf_token(c.rt.keyring.current("api_key_pepper").material, "console").encode()


def _secure() -> bool:
    """Whether the browser reached us over HTTPS (also behind a TLS proxy the operator trusts)."""
    if request.is_secure:
        return True
    if ctx().rt.settings.trust_forwarded_for:
        return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"
    return False


# ----------------------------------------------------------------------------- authentication


def authenticate_session(c: RequestContext) -> None:
    """Turn the session cookie into the caller (the key's current roles), or refuse."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise SignInRequired("sign in to use the console", reasons=["session_missing"])
    now = c.clock.now()
    try:
        row = cs.find_session(c.session, token)
        if row is None:
            raise SignInRequired("sign in to use the console", reasons=["session_unknown"])
        roles = cs.key_roles(c.session, row.key_id)
        c.caller = Caller(tenant_id=row.tenant_id, key_id=row.key_id, role=None, roles=roles,
                          actor=row.actor, request_id=c.request_id, source=client_source())
        refusal = cs.key_refusal(c.session, row.key_id, now)
        state = cs.session_state(row, _policy(c), now)
        row_id, key_id = row.id, row.key_id
    finally:
        c.session.rollback()
    if refusal is not None or state != "active":
        with transaction(c.rt.sessions) as s:
            if refusal is not None:
                cs.end_key_sessions(s, key_id)  # a revoked key ends every session it opened
            else:
                cs.end_session(s, row_id)
        raise SessionEnded("your console session has ended", reasons=[refusal or f"session_{state}"])
    g.console_session = (row_id, token)


def _view(c: RequestContext, action: str, *, subject: str | None = None,
          details: dict[str, Any] | None = None) -> None:
    """Audit a page view and mark the session active, in the request's transaction."""
    row_id, _ = g.console_session
    c.session.execute(update(ConsoleSession).where(ConsoleSession.id == row_id)
                      .values(last_seen_at=c.clock.now()))
    c.audit(action, "ok", subject=subject, details=details)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    c = ctx()
    if "console_session" in g and c.caller is not None:
        _, token = g.console_session
        context.setdefault("me", {"actor": c.caller.actor, "role": c.caller.role,
                                  "tenant_id": c.caller.tenant_id,
                                  "csrf": cs.csrf_token(_csrf_secret(c), "session:" + token)})
    return Response(render_template(f"console/{template}", **context), status=status,
                    mimetype="text/html")


def _redirect(target: str) -> Response:
    resp = Response("", status=303)
    resp.headers["Location"] = target
    return resp


def _html_endpoint(rule: str, *, action: str, methods: tuple[str, ...] = ("GET",)
                   ) -> Callable[[Callable[..., ViewResult]], Callable[..., Response]]:
    return endpoint(bp, rule, methods=methods, permission=PERMISSION, html=True,
                    authenticate=authenticate_session, action=action)


# ----------------------------------------------------------------------------- headers, errors


@bp.after_app_request
def _headers(resp: Response) -> Response:
    """Strict CSP and framing rules on every /console response (errors included)."""
    if request.path == "/console" or request.path.startswith("/console/"):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return resp


def _clear_session_cookie(resp: Response) -> None:
    resp.delete_cookie(SESSION_COOKIE, path="/console", secure=_secure(), httponly=True,
                       samesite="Strict")


@bp.errorhandler(GuardError)
def _error(err: GuardError) -> Response:
    """Refusals as HTML (audited like the API's); no session sends the browser to sign in."""
    if not refusal_recorded(err):  # fail closed when the refusal cannot be put on record
        return Response(render_template("console/error.html", status=503, title="Service unavailable",
                                        detail="Could not record the audit event."),
                        status=503, mimetype="text/html")
    if request.endpoint == "console.login_submit":
        return _login_page(error=err.detail, status=err.status)
    if isinstance(err, SignInRequired):
        if request.method == "GET":
            reason = err.reasons[0] if err.reasons else ""
            target = url_for("console.login_form", ended=reason) if reason in _ENDED \
                else url_for("console.login_form")
            resp = _redirect(target)
        else:
            resp = Response(render_template("console/error.html", status=401, title="Sign in required",
                                            detail=err.detail), status=401, mimetype="text/html")
        _clear_session_cookie(resp)
        return resp
    return Response(render_template("console/error.html", status=err.status, title=err.title,
                                    detail=err.detail, me=None), status=err.status, mimetype="text/html")


# ----------------------------------------------------------------------------- sign-in / out


def _login_page(*, error: str | None = None, status: int = 200, notice: str | None = None) -> Response:
    c = ctx()
    binding = cs.new_token()
    resp = Response(render_template("console/login.html", error=error, notice=notice,
                                    csrf=cs.csrf_token(_csrf_secret(c), "login:" + binding)),
                    status=status, mimetype="text/html")
    # Signed double submit: the form token is an HMAC of this cookie's random value.
    resp.set_cookie(LOGIN_COOKIE, binding, max_age=3600, path="/console", secure=_secure(),
                    httponly=True, samesite="Strict")
    return resp


@endpoint(bp, "/login", public=True, html=True, action="console.login.form")
def login_form(c: RequestContext) -> Response:
    """The sign-in page."""
    ended = request.args.get("ended", "")
    return _login_page(notice=_ENDED.get(ended))


@endpoint(bp, "/login", methods=("POST",), public=True, html=True, action="console.login")
def login_submit(c: RequestContext) -> Response:
    """Exchange a pasted API key for a console session."""
    binding = request.cookies.get(LOGIN_COOKIE, "")
    if not cs.csrf_ok(_csrf_secret(c), "login:" + binding if binding else None, request.form.get("csrf")):
        raise Forbidden("the sign-in form has expired or did not come from this site; try again",
                        reasons=["csrf_failed"])
    actor = request.form.get("actor", "").strip()
    if not _ACTOR_RE.match(actor):
        raise ValidationFailed([{"loc": ["form", "actor"], "msg": "enter your name (1-128 characters)"}],
                               detail="Enter your name (1-128 printable characters).")
    token = request.form.get("api_key", "").strip()
    rt = c.rt
    try:
        info = authenticate(c.session, token, pepper=rt.keyring.current("api_key_pepper").material,
                            now=c.clock.now(), cache=rt.key_cache)
    except KeyRejected as exc:
        c.caller = Caller(tenant_id=exc.info.tenant_id, key_id=exc.info.key_id, role=None,
                          roles=exc.info.roles, actor=actor, request_id=c.request_id,
                          source=client_source())
        raise
    except Unauthorized:
        count_unknown_key(rt, client_source())
        raise Unauthorized("that API key was not accepted", reasons=["key_unknown"]) from None
    finally:
        c.session.rollback()
    c.caller = Caller(tenant_id=info.tenant_id, key_id=info.key_id, role=None, roles=info.roles,
                      actor=actor, request_id=c.request_id, source=client_source())
    role = next((r for r in info.roles if c.policies.roles.allows(r, PERMISSION)), None)
    c.caller = dataclasses.replace(c.caller, role=role or info.roles[0])
    if role is None:
        raise Forbidden("this key's roles may not use the console (auditor, supervisor or "
                        "privacy officer keys may)", reasons=["role_not_permitted"])
    now = c.clock.now()
    old = cs.find_session(c.session, request.cookies.get(SESSION_COOKIE, ""))
    if old is not None:
        cs.end_session(c.session, old.id)  # never keep a session id the browser had before
    cs.prune_sessions(c.session, _policy(c), now)
    row, session_token = cs.open_session(c.session, tenant_id=info.tenant_id, key_id=info.key_id,
                                         actor=actor, policy=_policy(c), now=now)
    c.audit("console.login", "ok", details={"session_id": row.id})
    resp = _redirect(url_for("console.status"))
    resp.set_cookie(SESSION_COOKIE, session_token, max_age=_policy(c).max_hours * 3600,
                    path="/console", secure=_secure(), httponly=True, samesite="Strict")
    resp.delete_cookie(LOGIN_COOKIE, path="/console", secure=_secure(), httponly=True,
                       samesite="Strict")
    return resp


@_html_endpoint("/logout", methods=("POST",), action="console.logout")
def logout(c: RequestContext) -> Response:
    """End this console session."""
    row_id, token = g.console_session
    if not cs.csrf_ok(_csrf_secret(c), "session:" + token, request.form.get("csrf")):
        raise Forbidden("the sign-out form did not come from this site", reasons=["csrf_failed"])
    cs.end_session(c.session, row_id)
    c.audit("console.logout", "ok", details={"session_id": row_id})
    resp = _redirect(url_for("console.login_form", ended="signed_out"))
    _clear_session_cookie(resp)
    return resp


@endpoint(bp, "/static/console.css", public=True, html=True, action="console.static")
def stylesheet(c: RequestContext) -> Response:
    """The console's stylesheet."""
    resp = Response(_CSS.read_text(), mimetype="text/css")
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


# ----------------------------------------------------------------------------- pages


@_html_endpoint("/", action="console.status.read")
def status(c: RequestContext) -> Response:
    """Chain status, last checkpoint, denied decisions per day, domain panels."""
    full = request.args.get("full") == "1"
    res = audit_service.verify(c.session, c.tenant_id, clock=c.clock, full=full,
                               budget_seconds=c.rt.settings.audit_verify_budget_seconds)
    cp = proofs.latest_checkpoint(c.session, c.tenant_id)
    series = cs.denied_by_day(c.session, c.tenant_id, now=c.clock.now(), days=_policy(c).chart_days)
    rendered = panels.render_panels(panels.PanelInput(c.session, c.tenant_id, c.policies, c.clock.now()))
    _view(c, "console.status.read", details={
        "full": full, "ok": res.ok, "verified_through": res.verified_through,
        "head_seq": res.head_seq, "first_bad_seq": res.first_bad_seq})
    return _page("status.html", chain=res, full=full,
                 checkpoint=proofs.checkpoint_to_api(cp) if cp else None,
                 chart=chart.build(series), days=_policy(c).chart_days, panels=rendered)


_FILTERS = ("from", "to", "action", "actor", "outcome", "subject", "key_id", "limit")


@_html_endpoint("/events", action="console.events.read")
def events(c: RequestContext) -> Response:
    """Search audit events with the API's filters, one page at a time."""
    raw = {k: v.strip() for k in (*_FILTERS, "cursor") if (v := request.args.get(k, "")).strip()}
    raw.setdefault("limit", "50")
    errors: list[str] = []
    rows: list[AuditEvent] = []
    next_cursor = None
    try:
        query = EventQuery.model_validate(raw)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc']) or 'filters'}: {e['msg']}"
                  for e in exc.errors(include_url=False, include_input=False, include_context=False)]
    else:
        try:
            rows, next_cursor = audit_service.search_events(c.session, c.tenant_id, query,
                                                            page_max=c.policies.audit.page_max)
        except ValidationFailed as exc:
            errors = [exc.detail]
    filters: dict[str, Any] = {k: v for k, v in raw.items() if k != "cursor"}
    _view(c, "console.events.read", subject=raw.get("subject") if not errors else None, details={
        "filters": {k: v for k, v in filters.items() if k != "limit"}, "returned": len(rows),
        "invalid": bool(errors)})
    return _page("events.html", status=422 if errors else 200, errors=errors, filters=filters,
                 events=[audit_service.event_to_api(r) for r in rows],
                 next_url=url_for("console.events", **filters, cursor=next_cursor) if next_cursor else None,
                 first_url=url_for("console.events", **filters) if raw.get("cursor") else None)


@_html_endpoint("/events/<event_id>", action="console.event.read")
def event(c: RequestContext, event_id: str) -> Response:
    """One event: its decision, reasons, policy version and inclusion-proof status."""
    row = c.session.execute(select(AuditEvent).where(
        AuditEvent.id == event_id, AuditEvent.tenant_id == c.tenant_id)).scalar_one_or_none()
    if row is None:
        raise NotFound("no such audit event in this tenant")
    proof = cs.proof_status(c.session, c.tenant_id, row, c.rt.keyring)
    data = audit_service.event_to_api(row)
    # Details were scrubbed when written; scrub again so no page can ever show a card number.
    details = audit_service.scrub_details(data["details"]) if isinstance(data["details"], dict) else None
    _view(c, "console.event.read", details={"event_id": row.id, "proof": proof.state})
    return _page("event.html", ev=data, details_json=json.dumps(details, indent=2, sort_keys=True)
                 if details else None, proof=proof)


@_html_endpoint("/policies/<version>", action="console.policy.read")
def policy(c: RequestContext, version: str) -> Response:
    """Exactly the rules behind a decision, by the version recorded on its event."""
    if version == c.policies.version:
        content: dict[str, Any] = dict(c.policies.content)
    else:
        row = c.session.get(PolicyVersion, version)
        if row is None:
            raise NotFound("no policy version by that id was ever used")
        content = dict(row.content)
    _view(c, "console.policy.read", details={"version": version})
    return _page("policy.html", version=version, current=version == c.policies.version,
                 files={name: json.dumps(body, indent=2, sort_keys=True, default=str)
                        for name, body in sorted(content.items())})
