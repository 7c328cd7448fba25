"""SIEM forwarding throughput (events/s) to a local HTTP collector, against reading alone.

Baseline: reading and serializing the same events in the same batches without sending them,
so the ratio is the cost of the network hop and the cursor writes. Also: /metrics overhead on
a request (hooks on vs. off) and one scrape's time.
"""

from __future__ import annotations

import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from guard import create_app
from guard.audit.service import append
from guard.config import Settings
from guard.context import operator
from guard.db import transaction
from guard.migrate import upgrade
from guard.siem.service import Forwarder
from guard.siem.transports import event_line, make_transport, parse_destination

N = 20_000
BATCH = 500


def main() -> None:
    d = Path(tempfile.mkdtemp())
    url = f"sqlite:///{d / 'bench.db'}"
    upgrade(url)
    app = create_app(Settings(instance_dir=d, database_url=url, log_level="WARNING",
                              metrics_public=True))
    rt = app.extensions["guard"]
    tenant = "ten_bench"
    for start in range(0, N, 1000):
        with transaction(rt.sessions) as s:
            for i in range(start, start + 1000):
                append(s, caller=operator(tenant), action="bench.event", outcome="ok",
                       clock=rt.clock, details={"i": i})

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dest = parse_destination(f"http://127.0.0.1:{server.server_address[1]}/in")

    fwd = Forwarder(rt, dest, make_transport(dest), batch_size=BATCH)
    t0 = time.perf_counter()
    after, read = 0, 0
    while True:
        events = fwd._read(tenant, after)
        if not events:
            break
        b"".join(event_line(e) + b"\n" for e in events)
        after, read = int(events[-1]["seq"]), read + len(events)
    baseline = read / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    sent = fwd.run_once([tenant])[tenant].sent
    rate = sent / (time.perf_counter() - t0)
    print(f"siem forward (HTTP, batch {BATCH}, SQLite): {rate:,.0f} events/s; "
          f"read+serialize baseline {baseline:,.0f} events/s; ratio {rate / baseline:.2f}")

    client = app.test_client()

    def per_request(n: int = 2000) -> float:
        t = time.perf_counter()
        for _ in range(n):
            client.get("/healthz")
        return (time.perf_counter() - t) / n

    funcs = app.before_request_funcs[None]
    hooks = (funcs[0], app.after_request_funcs[None][-1])
    per_request(500)  # warm up
    with_hooks, without = [], []
    for _ in range(5):  # alternate, so drift hits both sides alike
        with_hooks.append(per_request(400))
        funcs.pop(0)
        app.after_request_funcs[None].pop()
        without.append(per_request(400))
        funcs.insert(0, hooks[0])
        app.after_request_funcs[None].append(hooks[1])
    with_hooks, without = min(with_hooks), min(without)
    print(f"request with metrics hooks: {with_hooks * 1e6:.0f} us; without: {without * 1e6:.0f} us; "
          f"ratio {with_hooks / without:.3f}")
    t = time.perf_counter()
    for _ in range(50):
        client.get("/metrics")
    scrape = (time.perf_counter() - t) / 50
    print(f"/metrics scrape: {scrape * 1e3:.1f} ms; ratio to /healthz {scrape / without:.1f}")
    server.shutdown()


if __name__ == "__main__":
    main()
