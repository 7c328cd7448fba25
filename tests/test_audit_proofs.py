"""Verifiable log: checkpoints, inclusion and consistency proofs, witnesses, offline export check."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import text

from guard.audit import merkle, proofs, service
from guard.clock import FixedClock
from guard.context import operator
from guard.db import transaction
from guard.jobs import run_job
from guard.runtime import Runtime
from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration


def _events(rt: Runtime, tenant_id: str, n: int) -> None:
    for i in range(n):
        with transaction(rt.sessions) as s:
            service.append(s, caller=operator(tenant_id), action="test.proof", outcome="ok",
                           clock=rt.clock, details={"i": i})


def _checkpoint(client: Any, tenant: TenantKeys) -> dict[str, Any]:
    r = client.post("/v1/audit/checkpoints", headers=tenant.headers("auditor"))
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()  # type: ignore[no-any-return]


def test_checkpoints_and_proofs(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    client = app.test_client()
    _events(rt, tenant.id, 13)
    first = _checkpoint(client, tenant)
    assert first["tree_size"] >= 13
    assert proofs.verify_checkpoint(first, first["public_key"])
    forged = {**first, "tree_size": first["tree_size"] + 1}
    assert not proofs.verify_checkpoint(forged, first["public_key"])
    h = tenant.headers("auditor")
    latest = client.get("/v1/audit/checkpoints/latest", headers=h).get_json()
    assert latest["id"] == first["id"]
    for seq in range(1, first["tree_size"] + 1):
        p = client.get(f"/v1/audit/events/{seq}/proof", headers=h).get_json()
        assert p["root_hash"] == first["root_hash"]
        leaf = merkle.leaf_hash(bytes.fromhex(p["event_hash"]))
        assert merkle.verify_inclusion(seq - 1, p["tree_size"], leaf,
                                       [bytes.fromhex(x) for x in p["path"]], bytes.fromhex(first["root_hash"]))
    _events(rt, tenant.id, 20)
    second = _checkpoint(client, tenant)
    assert second["tree_size"] > first["tree_size"]
    c = client.get(f"/v1/audit/consistency?from={first['tree_size']}&to={second['tree_size']}",
                   headers=h).get_json()
    assert merkle.verify_consistency(first["tree_size"], second["tree_size"],
                                     bytes.fromhex(first["root_hash"]), bytes.fromhex(second["root_hash"]),
                                     [bytes.fromhex(x) for x in c["proof"]])
    # Proofs against the older tree stay valid after the tree grew.
    old = client.get(f"/v1/audit/events/3/proof?size={first['tree_size']}", headers=h).get_json()
    assert old["root_hash"] == first["root_hash"]
    too_big = client.get(f"/v1/audit/events/3/proof?size={second['tree_size'] + 50}", headers=h)
    assert too_big.status_code == 422


def test_checkpoints_never_go_backwards(rt: Runtime, tenant: TenantKeys) -> None:
    _events(rt, tenant.id, 5)
    with transaction(rt.sessions) as s:
        service.verify(s, tenant.id, clock=rt.clock)
        cp = proofs.create_checkpoint(s, tenant.id, keyring=rt.keyring, clock=rt.clock, verified_through=5)
    with transaction(rt.sessions) as s:
        again = proofs.create_checkpoint(s, tenant.id, keyring=rt.keyring, clock=rt.clock,
                                         verified_through=3)
    assert again.id == cp.id and again.tree_size == 5


def test_rewritten_history_fails_against_the_checkpoint(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    # An operator with database access rewrites an event and recomputes every later hash and the
    # head: the chain alone now "verifies" from scratch, but the signed tree does not agree.
    client = app.test_client()
    _events(rt, tenant.id, 8)
    cp = _checkpoint(client, tenant)
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor='mallory' WHERE tenant_id=:t AND seq=4"),
                     {"t": tenant.id})
    with transaction(rt.sessions) as s:
        from sqlalchemy import select

        from guard.audit.models import AuditEvent, AuditHead

        rows = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == tenant.id)
                         .order_by(AuditEvent.seq)).scalars().all()
        prev = service.GENESIS
        for r in rows:
            d = {k: getattr(r, k) for k in service.SERVED}
            d["ts"] = service.format_ts(d["ts"])
            r.hash = service.chain_hash(prev, d)
            prev = r.hash
        s.get(AuditHead, tenant.id).hash = prev  # type: ignore[union-attr]
    with transaction(rt.sessions) as s:
        assert service.verify(s, tenant.id, clock=rt.clock, full=True, save_watermark=False).ok
        assert not service.verify(s, tenant.id, clock=rt.clock).ok  # the watermark remembers
    p = client.get("/v1/audit/events/4/proof?size={}".format(cp["tree_size"]),
                   headers=tenant.headers("auditor")).get_json()
    leaf = merkle.leaf_hash(bytes.fromhex(p["event_hash"]))
    assert not merkle.verify_inclusion(3, cp["tree_size"], leaf, [bytes.fromhex(x) for x in p["path"]],
                                       bytes.fromhex(cp["root_hash"]))
    assert client.post("/v1/audit/checkpoints", headers=tenant.headers("auditor")).status_code == 409


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_verifies_offline(app: Flask, rt: Runtime, clock: FixedClock, tenant: TenantKeys,
                                 tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = app.test_client()
    _events(rt, tenant.id, 6)
    clock.advance(days=1)
    mark = clock.now()
    _events(rt, tenant.id, 9)
    # Prune the oldest bodies: the export and its proof must still verify.
    with transaction(rt.sessions) as s:
        service.verify(s, tenant.id, clock=rt.clock)
        assert service.prune(s, tenant.id, before=mark - timedelta(hours=12), limit=3)[0] == 3
    resp = client.get(f"/v1/audit/export?format={fmt}", headers=tenant.headers("auditor"))
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    lines = body.splitlines(keepends=True)
    header = json.loads(lines[0].lstrip("#"))
    cp, key = header["checkpoint"], header["public_key"]
    result = proofs.verify_export(lines, cp, key)
    assert result.ok, result.message
    # A time range exports the matching contiguous seq range, still provable.
    ranged = client.get("/v1/audit/export", query_string={"format": fmt, "from": mark.isoformat()},
                        headers=tenant.headers("auditor")).get_data(as_text=True).splitlines(keepends=True)
    rh = json.loads(ranged[0].lstrip("#"))
    assert rh["from_seq"] == 7
    assert proofs.verify_export(ranged, rh["checkpoint"], key).ok
    # Any edit of the file is caught.
    idx = next(i for i, line in enumerate(lines) if "test.proof" in line and i > 5)
    tampered = [*lines[:idx], lines[idx].replace("test.proof", "test.other"), *lines[idx + 1:]]
    assert not proofs.verify_export(tampered, cp, key).ok
    dropped = lines[:idx] + lines[idx + 1:]
    assert not proofs.verify_export(dropped, cp, key).ok
    wrong_key = proofs.public_key_b64(__import__("cryptography.hazmat.primitives.asymmetric.ed25519",
                                                 fromlist=["x"]).Ed25519PrivateKey.generate().public_key())
    assert not proofs.verify_export(lines, cp, wrong_key).ok
    # The standalone CLI verifier, with no database configured at all.
    (tmp_path / "export").write_text(body)
    (tmp_path / "cp.json").write_text(json.dumps(cp))
    (tmp_path / "key").write_text(key)
    for var in ("GUARD_DATABASE_URL", "GUARD_INSTANCE_DIR"):
        monkeypatch.delenv(var, raising=False)
    from guard.cli import cli

    out = CliRunner().invoke(cli, ["audit", "verify-export", str(tmp_path / "export"),
                                   "--checkpoint", str(tmp_path / "cp.json"),
                                   "--public-key", str(tmp_path / "key")])
    assert out.exit_code == 0 and "OK" in out.output, out.output
    (tmp_path / "export").write_text("".join(tampered))
    bad = CliRunner().invoke(cli, ["audit", "verify-export", str(tmp_path / "export"),
                                   "--checkpoint", str(tmp_path / "cp.json"), "--public-key", key])
    assert bad.exit_code == 1


class _Witness(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append(body)
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"receipt": body["checkpoint"]["id"]}).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def witness() -> Iterator[tuple[str, type[_Witness]]]:
    handler = type("W", (_Witness,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/checkpoints", handler
    server.shutdown()
    server.server_close()


def test_witnesses_receive_checkpoints(app: Flask, rt: Runtime, clock: FixedClock, tenant: TenantKeys,
                                       witness: tuple[str, type[_Witness]]) -> None:
    url, handler = witness
    client = app.test_client()
    r = client.put("/v1/audit/witnesses", json={"urls": [url]}, headers=tenant.headers("admin"))
    assert r.status_code == 200 and r.get_json()["urls"] == [url]
    assert client.put("/v1/audit/witnesses", json={"urls": ["ftp://x"]},
                      headers=tenant.headers("admin")).status_code == 422
    _events(rt, tenant.id, 4)
    cp = _checkpoint(client, tenant)
    assert handler.received[-1]["checkpoint"]["id"] == cp["id"]
    assert proofs.verify_checkpoint(handler.received[-1]["checkpoint"], handler.received[-1]["public_key"])
    assert cp["receipts"][0]["ok"] and cp["id"] in cp["receipts"][0]["response"]
    # A witness that is down is retried by the job until it answers.
    handler.status = 503
    _events(rt, tenant.id, 2)
    cp2 = _checkpoint(client, tenant)
    assert cp2["receipts"][0]["ok"] is False
    handler.status = 200
    clock.advance(minutes=10)
    result = run_job(rt, "audit.checkpoint", force=True)
    assert result is not None and result["delivered"] >= 1
    latest = client.get("/v1/audit/checkpoints/latest", headers=tenant.headers("auditor")).get_json()
    assert latest["receipts"][0]["ok"]
    assert handler.received[-1]["checkpoint"]["id"] == latest["id"]
    if latest["id"] == cp2["id"]:
        assert latest["receipts"][0]["attempts"] == 2
