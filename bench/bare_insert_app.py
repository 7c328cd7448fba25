"""Baseline for bench/vault_tokenize.py: a bare Flask endpoint doing one INSERT + COMMIT per request."""

from __future__ import annotations

import os
import secrets

from flask import Flask, request
from sqlalchemy import create_engine, text

app = Flask(__name__)
engine = create_engine(os.environ["GUARD_DATABASE_URL"], pool_pre_ping=True)


@app.post("/insert")
def insert() -> tuple[str, int]:
    """Parse the JSON body, insert one row, commit."""
    body = request.get_json()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO bench_rows (id, payload) VALUES (:i, :p)"),
                     {"i": secrets.token_hex(16), "p": str(body.get("exp_year"))})
    return '{"ok":true}', 201
