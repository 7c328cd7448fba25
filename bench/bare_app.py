"""The baseline for bench/http_overhead.py: a bare Flask app (no auth, no audit) under gunicorn."""

from __future__ import annotations

import os

from _common import baseline_table, sample_row
from flask import Flask, Response, jsonify
from sqlalchemy import MetaData, insert

from guard.db import make_engine


def create_app() -> Flask:
    """Two routes: a JSON answer shaped like /v1/me, and one INSERT + COMMIT of an event-sized row."""
    app = Flask("bare")
    # Same engine set-up as Guard (SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE; PG: pooled).
    engine = make_engine(os.environ["BENCH_DATABASE_URL"])
    table = baseline_table(MetaData())
    tenant_id = os.environ.get("BENCH_TENANT_ID", "ten_bench")
    policy_version = "0" * 64

    @app.get("/json")
    def json_route() -> Response:
        return jsonify(tenant_id=tenant_id, tenant_name="bench", key_id="key_AbCdEfGhIjKl",
                       roles=["auditor"], actor=None, policy_version=policy_version)

    @app.get("/insert")
    def insert_route() -> Response:
        with engine.begin() as conn:
            conn.execute(insert(table), sample_row(tenant_id, policy_version))
        return jsonify(events=[], next_cursor=None)

    return app
