"""Console logic without HTTP: sessions, proof status of one event, denied decisions per day."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import String, cast, delete, func, select
from sqlalchemy.orm import Session

from guard.audit import merkle, proofs
from guard.audit.models import AuditCheckpoint, AuditEvent
from guard.audit.service import SERVED, chain_hash
from guard.auth.models import ApiKey
from guard.console.models import ConsoleSession
from guard.console.policy import ConsolePolicy
from guard.errors import GuardError
from guard.ids import new_id
from guard.keyring import Keyring

# ----------------------------------------------------------------------------- sessions

SessionState = Literal["active", "idle", "expired"]


def hash_token(token: str) -> str:
    """What the database stores for a cookie value (SHA-256: the token is 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random cookie value or CSRF token (256 bits)."""
    return secrets.token_urlsafe(32)


def open_session(session: Session, *, tenant_id: str, key_id: str, actor: str,
                 policy: ConsolePolicy, now: datetime) -> tuple[ConsoleSession, str]:
    """Store a new session; returns the row and the cookie value (never stored in clear)."""
    token = new_token()
    row = ConsoleSession(id=new_id("cs"), token_hash=hash_token(token), tenant_id=tenant_id,
                         key_id=key_id, actor=actor, created_at=now, last_seen_at=now,
                         expires_at=now + timedelta(hours=policy.max_hours))
    session.add(row)
    session.flush()
    return row, token


def find_session(session: Session, token: str) -> ConsoleSession | None:
    """The session a cookie value names, if any."""
    if not token or len(token) > 128:
        return None
    return session.execute(select(ConsoleSession).where(
        ConsoleSession.token_hash == hash_token(token))).scalar_one_or_none()


def session_state(row: ConsoleSession, policy: ConsolePolicy, now: datetime) -> SessionState:
    """Whether a session may still be used (both deadlines are checked on every request)."""
    if now >= row.expires_at:
        return "expired"
    if now - row.last_seen_at >= timedelta(minutes=policy.idle_minutes):
        return "idle"
    return "active"


def key_refusal(session: Session, key_id: str, now: datetime) -> str | None:
    """Why the key behind a session may no longer be used (None: it still may)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        return "key_unknown"
    if key.revoked_at is not None:
        return "key_revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "key_expired"
    return None


def key_roles(session: Session, key_id: str) -> tuple[str, ...]:
    """The roles a key holds now (read on every request, so a change applies at once)."""
    key = session.get(ApiKey, key_id)
    return tuple(key.roles) if key is not None else ()


def end_session(session: Session, session_id: str) -> None:
    """Delete one session (sign-out, expiry)."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))


def end_key_sessions(session: Session, key_id: str) -> int:
    """Delete every session opened with a key (revoked or expired keys)."""
    return session.execute(delete(ConsoleSession).where(  # type: ignore[attr-defined, no-any-return]
        ConsoleSession.key_id == key_id)).rowcount


def prune_sessions(session: Session, policy: ConsolePolicy, now: datetime) -> int:
    """Delete sessions past either deadline."""
    idle_since = now - timedelta(minutes=policy.idle_minutes)
    return session.execute(delete(ConsoleSession).where(  # type: ignore[attr-defined, no-any-return]
        (ConsoleSession.expires_at <= now) | (ConsoleSession.last_seen_at <= idle_since))).rowcount


def csrf_token(secret: bytes, binding: str) -> str:
    """The form token tied to a session (or sign-in cookie): HMAC, so nothing more is stored."""
    return hmac.new(secret, b"console-csrf\x00" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, binding: str | None, presented: str | None) -> bool:
    """Constant-time check of a presented form token."""
    if not binding or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret, binding), presented)


# ----------------------------------------------------------------------------- proof status


@dataclass(frozen=True)
class ProofStatus:
    """Whether one event is provably in the latest signed checkpoint."""

    state: Literal["included", "pending", "fails"]
    message: str
    checkpoint: dict[str, Any] | None = None
    path_length: int = 0


def _checkpoint_key_ok(cp: AuditCheckpoint, keyring: Keyring) -> bool:
    """The checkpoint's signature checks out under the keyring's key of the id it names."""
    for kv in keyring.versions(proofs.SIGNING_PURPOSE):
        pub = proofs.public_key_b64(Ed25519PrivateKey.from_private_bytes(kv.material).public_key())
        if f"ed25519:{pub[:16]}" == cp.key_id:
            return proofs.verify_checkpoint(proofs.checkpoint_to_api(cp), pub)
    return False


def proof_status(session: Session, tenant_id: str, event: AuditEvent, keyring: Keyring) -> ProofStatus:
    """Verify the event's inclusion in the latest checkpoint here, from its own content.

    The leaf is recomputed from the event's stored fields and its predecessor's hash, so an
    edited row fails even if its stored hash was left alone; the root comes from the signed
    checkpoint, not from the stored tree.
    """
    cp = proofs.latest_checkpoint(session, tenant_id)
    if cp is None:
        return ProofStatus("pending", "not yet checkpointed (no checkpoint has been signed)")
    cp_api = proofs.checkpoint_to_api(cp)
    if event.seq > cp.tree_size:
        return ProofStatus("pending", f"not yet checkpointed (the latest checkpoint covers seq "
                                      f"1-{cp.tree_size})", cp_api)
    if not _checkpoint_key_ok(cp, keyring):
        return ProofStatus("fails", "the checkpoint's signature does not verify", cp_api)
    try:
        proof = proofs.inclusion(session, tenant_id, event.seq, cp.tree_size)
    except (GuardError, LookupError, KeyError) as exc:
        return ProofStatus("fails", f"no inclusion proof can be built ({type(exc).__name__})", cp_api)
    if event.pruned_at is not None:
        # A pruned event keeps only its hash: that hash is what the tree committed to.
        leaf_source = event.hash
        note = " (event body pruned after retention; its hash is proven)"
    else:
        leaf_source = chain_hash(proof["prev_hash"], {k: getattr(event, k) for k in SERVED})
        note = ""
        if leaf_source != event.hash:
            return ProofStatus("fails", "the event's content no longer matches its hash", cp_api,
                               len(proof["path"]))
    ok = merkle.verify_inclusion(event.seq - 1, cp.tree_size, merkle.leaf_hash(bytes.fromhex(leaf_source)),
                                 [bytes.fromhex(h) for h in proof["path"]], bytes.fromhex(cp.root_hash))
    if not ok:
        return ProofStatus("fails", "the inclusion proof does not reach the signed root", cp_api,
                           len(proof["path"]))
    return ProofStatus("included", f"included in checkpoint {cp.tree_size}{note}", cp_api,
                       len(proof["path"]))


# ----------------------------------------------------------------------------- chart data


@dataclass(frozen=True)
class DeniedSeries:
    """Denied decisions per UTC day and reason, over a window of days ending today."""

    days: list[date]
    by_reason: dict[str, dict[date, int]]

    def total(self, day: date) -> int:
        """All denials of one day (an event with two reasons counts once per reason)."""
        return sum(counts.get(day, 0) for counts in self.by_reason.values())


def _reasons(stored: Any) -> list[str]:
    """An event's reasons whether the column reads back as JSON text or as a parsed list."""
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return ["(unreadable reasons)"]
    return [str(r) for r in stored] if isinstance(stored, list) else []


def denied_by_day(session: Session, tenant_id: str, *, now: datetime, days: int) -> DeniedSeries:
    """Count denied events per UTC day and reason, grouped in the database."""
    first = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
    dialect = session.get_bind().dialect.name
    day = (func.to_char(func.timezone("UTC", AuditEvent.ts), "YYYY-MM-DD") if dialect == "postgresql"
           else func.substr(cast(AuditEvent.ts, String), 1, 10))
    rows = session.execute(
        select(day, AuditEvent.reasons, func.count())
        .where(AuditEvent.tenant_id == tenant_id, AuditEvent.outcome == "deny",
               AuditEvent.ts >= since)
        .group_by(day, AuditEvent.reasons)).all()
    by_reason: dict[str, dict[date, int]] = defaultdict(dict)
    for day_text, stored, count in rows:
        d = date.fromisoformat(str(day_text))
        for reason in _reasons(stored) or ["(no reason)"]:
            by_reason[str(reason)][d] = by_reason[str(reason)].get(d, 0) + int(count)
    return DeniedSeries([first + timedelta(days=i) for i in range(days)], dict(by_reason))
