"""The baseline of the check benchmark: a bare Flask route doing one INSERT + COMMIT."""

from __future__ import annotations

import os
import uuid

from flask import Flask
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["GUARD_DATABASE_URL"], pool_pre_ping=True)
app = Flask("bare")


@app.post("/insert")
def insert() -> tuple[str, int]:
    """One durable row per request."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO bench_bare (id, body) VALUES (:i, :b)"),
                     {"i": uuid.uuid4().hex, "b": "x" * 200})
    return '{"ok":true}', 200
