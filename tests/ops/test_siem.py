"""SIEM forwarding: HTTP and syslog destinations bound to port 0, resume, retries, SIGTERM, job."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from guard.audit.models import AuditEvent
from guard.audit.service import append, event_to_api
from guard.context import operator
from guard.db import transaction
from guard.errors import ConfigError
from guard.jobs import run_job
from guard.models import JobLease
from guard.runtime import Runtime
from guard.siem.models import AuditForwardCursor
from guard.siem.service import Backoff, Forwarder, ForwardFailed
from guard.siem.transports import SyslogTransport, make_transport, parse_destination
from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------------------- local SIEMs


@dataclass
class HttpSink:
    """A local HTTP collector; `plan` holds the statuses of the next requests (then 200)."""

    url: str = ""
    plan: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(line) for body in self.bodies for line in body.splitlines()]


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with sink.lock:
                sink.attempts += 1
                status = sink.plan.pop(0) if sink.plan else 200
                if status < 300:
                    sink.bodies.append(body)
                    sink.headers.append(dict(self.headers))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/ingest"
    yield sink
    server.shutdown()
    server.server_close()


@dataclass
class SyslogSink:
    """A local syslog collector (TCP octet-counted frames or UDP datagrams)."""

    port: int = 0
    messages: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(m.split(" audit - ", 1)[1]) for m in self.messages]


@pytest.fixture
def tcp_sink() -> Iterator[SyslogSink]:
    sink = SyslogSink()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                length = b""
                while not length.endswith(b" "):
                    ch = self.rfile.read(1)
                    if not ch:
                        return
                    length += ch
                msg = self.rfile.read(int(length))
                with sink.lock:
                    sink.messages.append(msg.decode())

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    sink.port = server.server_address[1]
    yield sink
    server.shutdown()
    server.server_close()


@pytest.fixture
def udp_sink() -> Iterator[SyslogSink]:
    sink = SyslogSink()

    class Handler(socketserver.DatagramRequestHandler):
        def handle(self) -> None:
            with sink.lock:
                sink.messages.append(self.request[0].decode())

    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    sink.port = server.server_address[1]
    yield sink
    server.shutdown()
    server.server_close()


def seed(rt: Runtime, tenant: TenantKeys, n: int, **details: Any) -> None:
    with transaction(rt.sessions) as s:
        for i in range(n):
            append(s, caller=operator(tenant.id), action="test.event", outcome="deny" if i % 2 else "ok",
                   clock=rt.clock, reasons=["r"] if i % 2 else [], details={"i": i, **details})


def chain(rt: Runtime, tenant: TenantKeys) -> list[dict[str, Any]]:
    with transaction(rt.sessions) as s:
        rows = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == tenant.id)
                         .order_by(AuditEvent.seq)).scalars().all()
        return [event_to_api(r) for r in rows]


def cursor(rt: Runtime, url: str, tenant: TenantKeys) -> int | None:
    with transaction(rt.sessions) as s:
        row = s.get(AuditForwardCursor, (parse_destination(url).key, tenant.id))
        return None if row is None else row.seq


def forwarder(rt: Runtime, url: str, **kwargs: Any) -> Forwarder:
    dest = parse_destination(url)
    kwargs.setdefault("wait", lambda _s: False)  # never sleep in tests
    return Forwarder(rt, dest, make_transport(dest), **kwargs)


# ----------------------------------------------------------------------------- HTTP


def test_http_forwards_every_event_in_order_as_json_lines(rt: Runtime, tenant: TenantKeys,
                                                          http_sink: HttpSink) -> None:
    seed(rt, tenant, 7)
    fwd = forwarder(rt, http_sink.url, batch_size=3)
    progress = fwd.run_once([tenant.id])[tenant.id]
    # The first claim recorded that this destination now receives the trail.
    events = chain(rt, tenant)
    assert events[-1]["action"] == "audit.forward.start"
    assert events[-1]["details"] == {"destination": parse_destination(http_sink.url).key}
    assert http_sink.events() == events  # the served form, every field, in seq order
    assert progress.sent == 8 and progress.batches == 3
    assert http_sink.headers[0]["Content-Type"] == "application/x-ndjson"
    assert cursor(rt, http_sink.url, tenant) == 8
    # Caught up: a second run sends nothing; new events go next time, exactly once.
    assert fwd.run_once([tenant.id])[tenant.id].sent == 0
    seed(rt, tenant, 2)
    fwd.run_once([tenant.id])
    assert [e["seq"] for e in http_sink.events()] == list(range(1, 11))


def test_resume_after_a_refused_batch_loses_and_repeats_nothing(
        rt: Runtime, tenant: TenantKeys, http_sink: HttpSink) -> None:
    seed(rt, tenant, 9)  # + the forward.start event = 10
    http_sink.plan = [200, 503]  # the second batch is refused
    with pytest.raises(ForwardFailed, match="seq 5-8"):
        forwarder(rt, http_sink.url, batch_size=4, max_attempts=1).run_once([tenant.id])
    assert cursor(rt, http_sink.url, tenant) == 4
    # A restart (a new forwarder, as after a new process) resumes at seq 5.
    forwarder(rt, http_sink.url, batch_size=4).run_once([tenant.id])
    assert [e["seq"] for e in http_sink.events()] == list(range(1, 11))


def test_crash_between_acknowledgement_and_cursor_write_repeats_only_that_batch(
        rt: Runtime, tenant: TenantKeys, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """At-least-once: the SIEM may see one batch twice, never a gap."""
    seed(rt, tenant, 9)
    real = Forwarder._advance
    calls = {"n": 0}

    def advance_then_crash(self: Forwarder, tenant_id: str, seq: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected: database gone after the SIEM acknowledged seq 5-8")
        real(self, tenant_id, seq)

    monkeypatch.setattr(Forwarder, "_advance", advance_then_crash)
    with pytest.raises(RuntimeError, match="injected"):
        forwarder(rt, http_sink.url, batch_size=4).run_once([tenant.id])
    monkeypatch.setattr(Forwarder, "_advance", real)
    assert cursor(rt, http_sink.url, tenant) == 4
    forwarder(rt, http_sink.url, batch_size=4).run_once([tenant.id])
    seqs = [e["seq"] for e in http_sink.events()]
    assert seqs == [1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10]
    assert sorted(set(seqs)) == list(range(1, 11))


def test_retries_with_backoff_until_the_destination_recovers(
        rt: Runtime, tenant: TenantKeys, http_sink: HttpSink) -> None:
    seed(rt, tenant, 3)
    http_sink.plan = [500, 502, 503]
    waits: list[float] = []
    backoff = Backoff(base=1.0, cap=3.0, rng=__import__("random").Random(7))
    fwd = forwarder(rt, http_sink.url, batch_size=10, backoff=backoff,
                    wait=lambda s: waits.append(s) or False)
    assert fwd.run_once([tenant.id])[tenant.id].sent == 4
    assert http_sink.attempts == 4
    assert [e["seq"] for e in http_sink.events()] == [1, 2, 3, 4]
    # Exponential with jitter: within [ceiling/2, ceiling] for ceilings 1, 2, 3 (capped).
    assert len(waits) == 3
    for w, ceiling in zip(waits, (1.0, 2.0, 3.0), strict=True):
        assert ceiling / 2 <= w <= ceiling


def test_stop_during_a_retry_wait_leaves_the_cursor_unmoved(
        rt: Runtime, tenant: TenantKeys, http_sink: HttpSink) -> None:
    seed(rt, tenant, 3)
    http_sink.plan = [500]
    stop = threading.Event()

    def wait(_s: float) -> bool:
        stop.set()  # SIGTERM arrives while waiting to retry
        return True

    fwd = forwarder(rt, http_sink.url, stop=stop, wait=wait)
    assert fwd.run_once([tenant.id])[tenant.id].sent == 0
    assert cursor(rt, http_sink.url, tenant) == 0
    assert http_sink.events() == []


def test_a_second_forwarder_skips_a_leased_tenant(rt: Runtime, tenant: TenantKeys,
                                                 http_sink: HttpSink) -> None:
    seed(rt, tenant, 2)
    first = forwarder(rt, http_sink.url)
    assert first._claim(tenant.id) == 0
    second = forwarder(rt, http_sink.url)
    assert second.run_once([tenant.id])[tenant.id].skipped == "leased"
    assert http_sink.events() == []
    first._release(tenant.id)
    assert second.run_once([tenant.id])[tenant.id].sent == 3


def test_no_card_number_reaches_the_siem(rt: Runtime, tenant: TenantKeys, http_sink: HttpSink) -> None:
    seed(rt, tenant, 1, note="card 4242 4242 4242 4242 read out", pan="4242424242424242")
    forwarder(rt, http_sink.url).run_once([tenant.id])
    raw = b"".join(http_sink.bodies).decode()
    # The shared card detector keeps at most the last four digits (PCI DSS 3.4.1).
    assert "4242424242424242" not in raw and "4242 4242 4242" not in raw and "****4242" in raw


# ----------------------------------------------------------------------------- syslog


PRI_RE = re.compile(r"^<(\d+)>1 (\S+) (\S+) guard (\d+) audit - ")


def test_syslog_tcp_rfc5424_octet_counted(rt: Runtime, tenant: TenantKeys, tcp_sink: SyslogSink) -> None:
    seed(rt, tenant, 4)
    url = f"syslog://127.0.0.1:{tcp_sink.port}"
    forwarder(rt, url, batch_size=2).run_once([tenant.id])
    deadline = time.monotonic() + 10
    while len(tcp_sink.events()) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tcp_sink.events() == chain(rt, tenant)
    pris = [int(PRI_RE.match(m).group(1)) for m in tcp_sink.messages]  # type: ignore[union-attr]
    assert pris[:2] == [13 * 8 + 6, 13 * 8 + 5]  # log audit: ok = info, deny = notice
    assert PRI_RE.match(tcp_sink.messages[0]).group(2) == chain(rt, tenant)[0]["ts"]  # type: ignore[union-attr]


def test_syslog_tcp_connection_broken_mid_batch_resends_the_batch(
        rt: Runtime, tenant: TenantKeys, tcp_sink: SyslogSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two of four frames reach the collector, then the connection breaks: the batch is sent
    again whole on a new connection (at-least-once: seq 5-6 arrive twice, nothing is lost)."""
    seed(rt, tenant, 9)
    real_connect = SyslogTransport._connect
    broken = {"done": False}

    class BreaksMidBatch:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def sendall(self, data: bytes) -> None:
            if broken["done"] or b'"seq":5,' not in data:
                self.sock.sendall(data)
                return
            broken["done"] = True
            frames = _frames(data)
            self.sock.sendall(b"".join(frames[:2]))
            raise BrokenPipeError(32, "Broken pipe")

        def close(self) -> None:
            self.sock.close()

    def connect(self: SyslogTransport) -> Any:
        if self.sock is None:
            self.sock = BreaksMidBatch(real_connect(self))  # type: ignore[assignment]
            return self.sock
        return self.sock

    monkeypatch.setattr(SyslogTransport, "_connect", connect)
    forwarder(rt, f"syslog://127.0.0.1:{tcp_sink.port}", batch_size=4).run_once([tenant.id])
    deadline = time.monotonic() + 10
    while len(tcp_sink.events()) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    seqs = [e["seq"] for e in tcp_sink.events()]
    assert seqs == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10]
    assert cursor(rt, f"syslog://127.0.0.1:{tcp_sink.port}", tenant) == 10


def _frames(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        sp = data.index(b" ", i)
        n = int(data[i:sp])
        out.append(data[i:sp + 1 + n])
        i = sp + 1 + n
    return out


def test_syslog_udp(rt: Runtime, tenant: TenantKeys, udp_sink: SyslogSink) -> None:
    seed(rt, tenant, 2)
    forwarder(rt, f"syslog+udp://127.0.0.1:{udp_sink.port}").run_once([tenant.id])
    deadline = time.monotonic() + 10
    while len(udp_sink.events()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(e["seq"] for e in udp_sink.events()) == [1, 2, 3]


# ----------------------------------------------------------------------------- destinations


@pytest.mark.parametrize("url, message", [
    ("ftp://siem.example", "use one of"),
    ("https://user:secret@siem.example/in", "GUARD_SIEM_AUTHORIZATION"),
    ("http://siem.example/in", "loopback"),
    ("syslog://siem.example:514/path", "no path"),
    ("syslog://:514", "host is required"),
])
def test_bad_destinations_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_destination(url)
    assert "secret" not in str(info.value)


def test_destination_keys() -> None:
    assert parse_destination("syslog://Siem.Example").key == "syslog://siem.example:514"
    assert parse_destination("syslog+tls://siem.example").key == "syslog+tls://siem.example:6514"
    assert parse_destination("https://siem.example/hec?index=guard").key == \
        "https://siem.example:443/hec?index=guard"
    assert parse_destination("http://[::1]:8088").key == "http://[::1]:8088/"


# ----------------------------------------------------------------------------- job and CLI


def test_the_job_forwards_to_configured_destinations(
        rt: Runtime, tenant: TenantKeys, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    assert run_job(rt, "siem.forward", force=True) == {"skipped": "GUARD_SIEM_URL is not set"}
    seed(rt, tenant, 2)
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={
        "siem_url": http_sink.url, "siem_authorization": SecretStr("Splunk abc")}))
    result = run_job(rt, "siem.forward", force=True)
    assert result is not None and result[parse_destination(http_sink.url).key]["sent"] >= 3
    mine = [e for e in http_sink.events() if e["tenant_id"] == tenant.id]
    assert [e["seq"] for e in mine] == [1, 2, 3]
    assert http_sink.headers[0]["Authorization"] == "Splunk abc"
    # A destination that keeps refusing fails the job, which the job lease records (and the
    # guard_job_last_run_ok gauge reports).
    seed(rt, tenant, 1)
    http_sink.plan = [500] * 3
    from guard.siem import jobs as siem_jobs

    monkeypatch.setattr(siem_jobs, "Backoff", lambda **_: Backoff(base=0.001, cap=0.001))
    with pytest.raises(ForwardFailed):
        run_job(rt, "siem.forward", force=True)
    with transaction(rt.sessions) as s:
        lease = s.get(JobLease, "siem.forward")
        assert lease is not None and lease.last_status == "error"


def _cli_env(rt: Runtime) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update({"GUARD_DATABASE_URL": rt.settings.database_url,
                "GUARD_INSTANCE_DIR": str(rt.settings.instance_dir),
                "GUARD_KEYRING_PATH": str(rt.settings.keyring_file), "GUARD_LOG_LEVEL": "WARNING"})
    return env


def test_cli_once_then_sigterm_stops_the_stream_cleanly(rt: Runtime, tenant: TenantKeys,
                                                        http_sink: HttpSink) -> None:
    guard = [os.path.join(os.path.dirname(sys.executable), "guard")]
    seed(rt, tenant, 3)
    out = subprocess.run([*guard, "audit", "forward", "--to", http_sink.url, "--tenant", tenant.name,
                          "--once"], env=_cli_env(rt), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{tenant.id}: 4 events (seq 1-4)" in out.stdout
    seed(rt, tenant, 2)
    proc = subprocess.Popen([*guard, "audit", "forward", "--to", http_sink.url, "--tenant", tenant.id,
                             "--poll", "0.1"], env=_cli_env(rt), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(http_sink.events()) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(http_sink.events()) == 6
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped; 2 events sent" in stdout
    assert [e["seq"] for e in http_sink.events()] == [1, 2, 3, 4, 5, 6]
    assert cursor(rt, http_sink.url, tenant) == 6
    with transaction(rt.sessions) as s:
        row = s.get(AuditForwardCursor, (parse_destination(http_sink.url).key, tenant.id))
        assert row is not None and row.holder is None  # the lease was released on the way out


def test_cli_once_exits_non_zero_when_the_destination_keeps_failing(
        rt: Runtime, tenant: TenantKeys, http_sink: HttpSink) -> None:
    guard = os.path.join(os.path.dirname(sys.executable), "guard")
    http_sink.plan = [500]
    out = subprocess.run([guard, "audit", "forward", "--to", http_sink.url, "--tenant", tenant.id,
                          "--once", "--max-attempts", "1"], env=_cli_env(rt), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "not delivered after 1 attempts: HTTP 500" in out.stderr
    assert cursor(rt, http_sink.url, tenant) == 0


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("tls")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = d / "ca.pem", d / "server.pem", d / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(ca_file), str(cert_file), str(key_file)


def _server_context(tls_files: tuple[str, str, str]) -> Any:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_files[1], tls_files[2])
    return ctx


def test_https_with_a_private_ca(rt: Runtime, tenant: TenantKeys,
                                 tls_files: tuple[str, str, str]) -> None:
    import http.server
    from pathlib import Path

    seed(rt, tenant, 2)

    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = _server_context(tls_files).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/in"
    try:
        # Without the CA the certificate is refused: nothing is sent, the cursor stays.
        dest = parse_destination(url)
        untrusted = Forwarder(rt, dest, make_transport(dest), max_attempts=1, wait=lambda _s: False)
        with pytest.raises(ForwardFailed, match="ConnectError"):
            untrusted.run_once([tenant.id])
        assert received == [] and cursor(rt, url, tenant) == 0
        trusted = Forwarder(rt, dest, make_transport(dest, ca_file=Path(tls_files[0])),
                            wait=lambda _s: False)
        trusted.run_once([tenant.id])
        assert [json.loads(line)["seq"] for b in received for line in b.splitlines()] == [1, 2, 3]
    finally:
        server.shutdown()
        server.server_close()


def test_syslog_over_tls(rt: Runtime, tenant: TenantKeys, tls_files: tuple[str, str, str]) -> None:
    from pathlib import Path

    seed(rt, tenant, 2)
    sink = SyslogSink()
    ctx = _server_context(tls_files)

    class Handler(socketserver.StreamRequestHandler):
        def setup(self) -> None:
            self.request = ctx.wrap_socket(self.request, server_side=True)
            super().setup()

        def handle(self) -> None:
            data = b""
            while chunk := self.request.recv(65536):
                data += chunk
                frames = []
                while b" " in data:
                    sp = data.index(b" ")
                    n = int(data[:sp])
                    if len(data) < sp + 1 + n:
                        break
                    frames.append(data[sp + 1:sp + 1 + n].decode())
                    data = data[sp + 1 + n:]
                with sink.lock:
                    sink.messages.extend(frames)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"syslog+tls://127.0.0.1:{server.server_address[1]}"
    try:
        dest = parse_destination(url)
        fwd = Forwarder(rt, dest, make_transport(dest, ca_file=Path(tls_files[0])), wait=lambda _s: False)
        fwd.run_once([tenant.id])
        fwd.close()
        deadline = time.monotonic() + 10
        while len(sink.events()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e["seq"] for e in sink.events()] == [1, 2, 3]
    finally:
        server.shutdown()
        server.server_close()


def test_round_robin_per_pass_limit(rt: Runtime, tenant: TenantKeys, http_sink: HttpSink) -> None:
    seed(rt, tenant, 9)
    fwd = forwarder(rt, http_sink.url, batch_size=2)
    first = fwd.run_once([tenant.id], max_batches=2)[tenant.id]
    assert (first.sent, first.to_seq, first.more) == (4, 4, True)
    rest = fwd.run_once([tenant.id])[tenant.id]
    assert (rest.from_seq, rest.to_seq, rest.more) == (4, 10, False)
    assert [e["seq"] for e in http_sink.events()] == list(range(1, 11))
