"""Delivery of one-time codes and change notices: a local outbox (dev) or a signed webhook.

The webhook POSTs JSON to the tenant's SMS/email gateway with
`Guard-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (the scheme Stripe
uses), so the gateway can reject forged or replayed requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

Channel = Literal["sms", "email"]
SIGNATURE_HEADER = "Guard-Signature"


class DeliveryFailed(Exception):
    """The gateway did not accept the message (the text never includes the message)."""


@dataclass(frozen=True)
class Message:
    """One message to one destination; `body` may hold a code and must never be logged."""

    tenant_id: str
    channel: Channel
    # Never in a repr: a message printed in a traceback or log must not carry a code or contact.
    destination: str = field(repr=False)
    purpose: Literal["otp", "contact_changed"]
    body: str = field(repr=False)
    message_id: str

    def payload(self) -> dict[str, Any]:
        """The JSON the gateway receives."""
        return {"id": self.message_id, "tenant_id": self.tenant_id, "channel": self.channel,
                "to": self.destination, "purpose": self.purpose, "text": self.body}


class Notifier(Protocol):
    """Delivers a message or raises DeliveryFailed."""

    def send(self, message: Message, *, now: datetime) -> None:
        """Deliver `message`."""
        ...


class LocalOutbox:
    """Development only: appends messages to a 0600 JSON-lines file under the instance dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message: Message, *, now: datetime) -> None:
        """Append the message."""
        line = json.dumps({**message.payload(), "at": now.isoformat()}) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(line)

    def messages(self) -> list[dict[str, Any]]:
        """Every message delivered so far (what a developer reads instead of a phone)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, body: bytes, header: str, *, now: int, tolerance: int = 300) -> bool:
    """What a gateway does with the header: recompute, compare in constant time, check age."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookNotifier:
    """POSTs each message to the tenant's gateway, signed; any non-2xx is a failure."""

    def __init__(self, url: str, secret: bytes, *, timeout: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, message: Message, *, now: datetime) -> None:
        """POST the message; DeliveryFailed names the status, never the body."""
        body = json.dumps(message.payload(), separators=(",", ":")).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={  # noqa: S310
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body, int(now.timestamp())),
            "Idempotency-Key": message.message_id,
        })
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - URL validated at config
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"gateway answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DeliveryFailed(f"gateway unreachable: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"gateway answered {status}")
