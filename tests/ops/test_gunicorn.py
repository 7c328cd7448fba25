"""gunicorn.conf.py: several workers, multiprocess metrics, request ids in the access log."""

from __future__ import annotations

import http.client
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "gunicorn.conf.py"

pytestmark = pytest.mark.integration


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over gunicorn's unix socket (no TCP port to pick)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.path)
        self.sock = sock


def get(sock: str, path: str) -> tuple[int, dict[str, str], str]:
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", path + "?ignored=1")
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def test_gunicorn_serves_with_several_workers_and_adds_up_their_metrics(
        settings: Settings, tmp_path: Path) -> None:
    sock = str(tmp_path / "guard.sock")
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_999999.db").write_bytes(b"stale")  # from a previous run: must be wiped
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "GUNICORN_"))}
    env.update({"PROMETHEUS_MULTIPROC_DIR": str(prom), "GUARD_DATABASE_URL": settings.database_url,
                "GUARD_INSTANCE_DIR": str(settings.instance_dir),
                "GUARD_KEYRING_PATH": str(settings.keyring_file), "GUARD_METRICS_PUBLIC": "true",
                "GUARD_LOG_LEVEL": "WARNING"})
    log = tmp_path / "gunicorn.log"
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    with log.open("wb") as out:
        proc = subprocess.Popen([gunicorn, "-c", str(CONF), "--bind", f"unix:{sock}", "--workers", "2"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        ids = []
        for _ in range(10):
            status, headers, _ = get(sock, "/healthz")
            assert status == 200
            ids.append(headers["X-Request-Id"])
        status, headers, body = get(sock, "/metrics")
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    healthz = [s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == "guard_http_request_duration_seconds_count"
               and s.labels.get("route") == "/healthz"]
    assert sum(healthz) == 10
    assert not (prom / "counter_999999.db").exists()
    text = log.read_text()
    for rid in ids:
        assert f'request_id={rid} ' in text
    assert 'path="/healthz" status=200' in text
    assert "ignored=1" not in text  # query strings stay out of the access log
    assert proc.returncode == 0


def test_child_exit_drops_only_the_dead_workers_live_gauges(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    conf: dict[str, Any] = runpy.run_path(str(CONF))
    for name in ("gauge_livesum_4242.db", "gauge_liveall_4242.db", "counter_4242.db",
                 "gauge_livesum_7.db"):
        (tmp_path / name).write_bytes(b"")
    conf["child_exit"](None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_7.db"]
    conf["on_starting"](None)
    assert list(tmp_path.iterdir()) == []
    assert conf["workers"] >= 3 and conf["worker_class"] == "gthread"
    assert conf["wsgi_app"] == "guard:create_app()"
