"""Destinations a SIEM listens on: syslog (RFC 5424 over TCP, TLS or UDP) and HTTPS (NDJSON)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from guard.errors import ConfigError

# RFC 5424 facility 13 is "log audit"; severities by outcome (a refusal is worth a notice).
FACILITY_LOG_AUDIT = 13
SEVERITY = {"error": 3, "deny": 5, "allow": 6, "ok": 6}
SCHEMES = ("syslog", "syslog+tcp", "syslog+tls", "syslog+udp", "https", "http")
DEFAULT_PORTS = {"syslog": 514, "syslog+tcp": 514, "syslog+udp": 514, "syslog+tls": 6514,
                 "https": 443, "http": 80}
UDP_MAX = 65507


class SendError(Exception):
    """The destination did not acknowledge a batch; nothing in it counts as delivered."""


@dataclass(frozen=True)
class Destination:
    """A parsed destination; `key` names it in the cursor table and in audit events."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    key: str


def parse_destination(url: str) -> Destination:
    """Parse and check a destination URL; a ConfigError says what is wrong with it."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"SIEM destination {scheme or '?'}://...: use one of "
                          + ", ".join(f"{s}://" for s in SCHEMES))
    if parts.username or parts.password:
        # Credentials in a URL end up in process lists, logs and the cursor table.
        raise ConfigError("SIEM destination: put credentials in GUARD_SIEM_AUTHORIZATION, "
                          "not in the URL")
    host = parts.hostname
    if not host:
        raise ConfigError(f"SIEM destination {scheme}://: a host is required")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ConfigError("SIEM destination: the port is not a number 0-65535") from None
    if scheme == "http" and not _is_loopback(host):
        # Audit events travel only encrypted beyond this host (PCI DSS 4.2.1); a local
        # collector (Vector, Fluent Bit) on the loopback interface may take plain HTTP.
        raise ConfigError("SIEM destination: http:// is allowed only to a loopback address; "
                          "use https://")
    if scheme.startswith("syslog") and parts.path not in ("", "/"):
        raise ConfigError("SIEM destination: a syslog URL has no path")
    path = parts.path or "/"
    netloc = f"[{host}]" if ":" in host else host
    key = f"{scheme}://{netloc}:{port}"
    if scheme.startswith("http"):
        key += path + (f"?{parts.query}" if parts.query else "")
    if len(key) > 255:
        raise ConfigError("SIEM destination: the URL is longer than 255 characters")
    return Destination(url=url.strip(), scheme=scheme, host=host, port=port, path=path, key=key)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def event_line(event: Mapping[str, Any]) -> bytes:
    """One event as one JSON line (compact, UTF-8, no newline inside)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


class Transport(Protocol):
    """Sends a batch of events; returns only when the destination has taken all of them."""

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Deliver `events` in order or raise SendError."""

    def close(self) -> None:
        """Release connections."""


class HttpTransport:
    """POSTs each batch as NDJSON; any 2xx acknowledges the whole batch."""

    def __init__(self, dest: Destination, *, authorization: str | None, ca_file: Path | None,
                 timeout: float = 10.0) -> None:
        self.dest = dest
        headers = {"Content-Type": "application/x-ndjson", "User-Agent": "guard-siem-forwarder"}
        if authorization:
            headers["Authorization"] = authorization
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) \
            if ca_file else True
        self.client = httpx.Client(headers=headers, timeout=timeout, verify=verify,
                                   follow_redirects=False)

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        """POST the batch; anything but a 2xx (or no answer) is a failure."""
        body = b"".join(event_line(e) + b"\n" for e in events)
        try:
            resp = self.client.post(self.dest.url, content=body)
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise SendError(f"HTTP {resp.status_code}")

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class SyslogTransport:
    """RFC 5424 messages carrying one JSON event each; TCP and TLS use octet counting (RFC 6587).

    TCP has no application acknowledgement: a batch counts as delivered once the kernel took
    every byte. A connection that breaks mid-batch fails the batch, which is sent again whole.
    UDP gives no delivery guarantee at all and is offered only for legacy collectors.
    """

    def __init__(self, dest: Destination, *, ca_file: Path | None, timeout: float = 10.0) -> None:
        self.dest = dest
        self.timeout = timeout
        self.hostname = socket.gethostname()[:255] or "-"
        self.procid = str(os.getpid())
        self.sock: socket.socket | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if dest.scheme == "syslog+tls":
            self.ssl_context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def message(self, event: Mapping[str, Any]) -> bytes:
        """`<PRI>1 TIMESTAMP HOST guard PROCID audit - JSON`."""
        pri = FACILITY_LOG_AUDIT * 8 + SEVERITY.get(str(event.get("outcome")), 6)
        ts = event.get("ts") or "-"
        return f"<{pri}>1 {ts} {self.hostname} guard {self.procid} audit - ".encode() + event_line(event)

    def _connect(self) -> socket.socket:
        if self.sock is not None:
            return self.sock
        if self.dest.scheme == "syslog+udp":
            family = socket.AF_INET6 if ":" in self.dest.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.settimeout(self.timeout)
            sock.connect((self.dest.host, self.dest.port))
        else:
            sock = socket.create_connection((self.dest.host, self.dest.port), timeout=self.timeout)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.dest.host)
        self.sock = sock
        return sock

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Send every message of the batch; a broken connection fails the batch."""
        try:
            sock = self._connect()
            if self.dest.scheme == "syslog+udp":
                for e in events:
                    msg = self.message(e)
                    if len(msg) > UDP_MAX:
                        raise SendError(f"event seq {e.get('seq')} is too large for UDP syslog")
                    sock.send(msg)
            else:
                frames = [f"{len(m)} ".encode() + m for m in map(self.message, events)]
                sock.sendall(b"".join(frames))
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise SendError(f"{type(exc).__name__}: {exc.strerror or exc}"
                            if isinstance(exc, OSError) else type(exc).__name__) from None

    def close(self) -> None:
        """Close the socket (the next send reconnects)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


def make_transport(dest: Destination, *, authorization: str | None = None,
                   ca_file: Path | None = None) -> Transport:
    """The transport for a destination."""
    if dest.scheme in ("https", "http"):
        return HttpTransport(dest, authorization=authorization, ca_file=ca_file)
    return SyslogTransport(dest, ca_file=ca_file)
