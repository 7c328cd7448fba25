"""Leak test: after a realistic workload no card number or CVC is anywhere it must not be."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from guard.audit.models import AuditEvent
from guard.db import Base, transaction
from guard.logs import JsonFormatter, PanMaskingFilter
from guard.pci.vault import CardIntegrityError
from guard.runtime import Runtime
from tests.conftest import TenantKeys
from tests.pci.helpers import detokenize

# (PAN, CVC) pairs sent with tokenization; CVCs chosen so the card's own digits do not hold them.
CARDS = [("4242424242424242", "731"), ("5555555555554444", "862"), ("378282246310005", "9154"),
         ("6011111111111117", "573"), ("3566002020360505", "618")]
OTHER_PANS = ["4000056655665556", "2223003122003222", "6200000000000005"]


def forms(pan: str) -> list[str]:
    """Every way a PAN could sit in text or bytes."""
    groups = [pan[i:i + 4] for i in range(0, len(pan), 4)]
    return [pan, " ".join(groups), "-".join(groups), pan.encode().hex(),
            base64.b64encode(pan.encode()).decode()]


def workload(client: FlaskClient, tenant: TenantKeys, rt: Runtime, bodies: list[str]) -> dict[str, str]:
    """Tokenize with CVCs, read, detokenize, delete, send bad input and redaction requests."""
    h = tenant.headers("agent")
    tokens: dict[str, str] = {}

    def call(method: str, url: str, **kw: Any) -> Any:
        r = client.open(url, method=method, headers=kw.pop("headers", h), **kw)
        bodies.append(r.get_data(as_text=True))
        return r

    for pan, cvc in CARDS:
        spaced = " ".join(pan[i:i + 4] for i in range(0, len(pan), 4))
        r = call("POST", "/v1/cards", json={"number": spaced, "exp_month": 9, "exp_year": 2029,
                                            "cvc": cvc, "customer_ref": "cust-77"})
        assert r.status_code == 201, r.json
        tokens[pan] = r.json["token"]
        call("GET", f"/v1/cards/{r.json['token']}")
        assert detokenize(rt, tenant.id, r.json["token"]).pan == pan
        assert rt.extras["vault"].take_cvc(tenant_id=tenant.id, token=r.json["token"]) == cvc
    # Errors and bad input with card numbers in the wrong places.
    bad: list[dict[str, Any]] = [
        {"number": OTHER_PANS[0][:-1] + "0", "exp_month": 9, "exp_year": 2029},   # Luhn fails
        {"number": OTHER_PANS[0], "exp_month": 9, "exp_year": 2019},              # expired
        {"number": OTHER_PANS[0], "exp_month": 9, "exp_year": 2029, "cvc": "12"},
        {"number": OTHER_PANS[1], "exp_month": OTHER_PANS[1], "exp_year": 2029},
        {"number": "x", "exp_month": 9, "exp_year": 2029, "customer_ref": OTHER_PANS[2]},
        {"pan": OTHER_PANS[2], "cvv": "123"},
        {"number": int(OTHER_PANS[0]), "exp_month": 9, "exp_year": 2029},
    ]
    for body in bad:
        assert call("POST", "/v1/cards", json=body).status_code == 422
    call("POST", "/v1/cards", data=f'{{"number": "{OTHER_PANS[1]}", ', content_type="application/json")
    call("GET", f"/v1/cards/{OTHER_PANS[0]}")
    call("DELETE", f"/v1/cards/{OTHER_PANS[1]}", headers=tenant.headers("supervisor"))
    call("POST", "/v1/cards", json={"number": OTHER_PANS[0], "exp_month": 9, "exp_year": 2029},
         headers=tenant.headers("dialer"))
    transcript = ("Agent: go ahead.\nCustomer: it's " + " ".join(["four", "two", "four", "two"] * 4)
                  + f" expires oh nine twenty nine. Also my other card {OTHER_PANS[0]} and "
                  + "-".join(OTHER_PANS[1][i:i + 4] for i in range(0, 16, 4)) + " cvv 123")
    r = call("POST", "/v1/redact", json={"text": transcript})
    assert r.status_code == 200 and r.json["findings"]
    logging.getLogger("guard.test").warning("customer read %s aloud", OTHER_PANS[2])
    # A swapped ciphertext makes an error path log and audit.
    from sqlalchemy import update

    from guard.pci.models import VaultCard

    a, b = tokens[CARDS[0][0]], tokens[CARDS[1][0]]
    with transaction(rt.sessions) as s:
        ca, cb = s.get(VaultCard, a), s.get(VaultCard, b)
        assert ca is not None and cb is not None
        blob_a, blob_b = ca.ciphertext, cb.ciphertext
        s.execute(update(VaultCard).where(VaultCard.token == a).values(ciphertext=blob_b))
    with pytest.raises(CardIntegrityError):
        detokenize(rt, tenant.id, a)
    with transaction(rt.sessions) as s:
        s.execute(update(VaultCard).where(VaultCard.token == a).values(ciphertext=blob_a))
    call("DELETE", f"/v1/cards/{tokens[CARDS[4][0]]}", headers=tenant.headers("supervisor"))
    return tokens


def db_values(rt: Runtime) -> list[tuple[str, str, Any]]:
    """(table, column, value) of every cell of every table."""
    out: list[tuple[str, str, Any]] = []
    with transaction(rt.sessions) as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).mappings():
                out.extend((table.name, col, v) for col, v in row.items())
    return out


def raw_database_text(rt: Runtime) -> str:
    """The database's raw bytes (SQLite files) or every row as PostgreSQL's own text form."""
    url = rt.settings.database_url
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        data = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        return data.decode("latin-1")
    parts: list[str] = []
    with transaction(rt.sessions) as s:
        for table in Base.metadata.sorted_tables:
            parts.extend(str(v) for v in s.execute(text(f'SELECT t::text FROM "{table.name}" t')).scalars())
    return "\n".join(parts)


def test_no_card_number_or_cvc_leaks(client: FlaskClient, tenant: TenantKeys, rt: Runtime) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PanMaskingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    bodies: list[str] = []
    try:
        tokens = workload(client, tenant, rt, bodies)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logs = stream.getvalue()
    assert logs, "the workload logged something"
    cells = db_values(rt)
    raw = raw_database_text(rt)
    # The scans see the data: a live token is in the raw database, a masked PAN in a body.
    assert tokens[CARDS[1][0]] in raw and any("[CARD ****" in b for b in bodies)
    with transaction(rt.sessions) as s:
        fields = ("actor", "action", "reasons", "subject", "details")
        audit_rows = [json.dumps({k: getattr(e, k) for k in fields}, default=str)
                      for e in s.execute(select(AuditEvent)
                                         .where(AuditEvent.tenant_id == tenant.id)).scalars()]
    for pan in [p for p, _ in CARDS] + OTHER_PANS:
        for form in forms(pan):
            assert form not in raw, f"{form} in the raw database"
            assert form not in logs, f"{form} in the logs"
            for table, col, value in cells:
                if isinstance(value, bytes | bytearray):
                    assert form.encode() not in value and pan.encode() not in value, (table, col)
                else:
                    assert form not in str(value), (table, col)
            for body in bodies:
                assert form not in body
            for ev in audit_rows:
                assert form not in ev
    # CVCs: field by field, where they were sent (that card's row, its events, the log lines).
    standalone = {cvc: re.compile(rf"(?<![0-9A-Za-z]){cvc}(?![0-9A-Za-z])") for _, cvc in CARDS}
    for pan, cvc in CARDS:
        token = tokens[pan]
        for table, col, value in cells:
            if isinstance(value, str) and value == cvc:
                raise AssertionError(f"CVC in {table}.{col}")
        with transaction(rt.sessions) as s:
            row = s.execute(text("SELECT * FROM vault_cards WHERE token = :t"),
                            {"t": token}).mappings().first()
        if row is not None:
            for col, value in row.items():
                if col in ("token", "fingerprint", "ciphertext"):
                    continue  # random values: checked for equality above
                assert cvc not in str(value), col
        for ev in audit_rows:
            if token in ev:
                event = json.loads(ev)
                details = event.get("details") or {}
                details = json.loads(details) if isinstance(details, str) else details
                for key, value in details.items():
                    if key in ("token", "fp_prefix", "dek_id"):
                        assert value != cvc
                    else:
                        assert not standalone[cvc].search(str(value)), key
        for line in logs.splitlines():
            entry = json.loads(line)
            assert not standalone[cvc].search(entry.get("msg", "") + entry.get("exc", "")), line
        assert not any(standalone[cvc].search(b) for b in bodies)
