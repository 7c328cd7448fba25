"""Shared helpers for the vault tests."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from guard.context import Caller
from guard.db import transaction
from guard.pci.vault import CardSecret, vault_for
from guard.runtime import Runtime


def tokenize(client: FlaskClient, headers: dict[str, str], number: str = "4242424242424242",
             **extra: Any) -> Any:
    """POST /v1/cards."""
    body = {"number": number, "exp_month": 12, "exp_year": 2028, **extra}
    return client.post("/v1/cards", json=body, headers=headers)


def detokenize(rt: Runtime, tenant_id: str, token: str, purpose: str = "charge") -> CardSecret:
    """What the payment adapter does: resolve a token in its own transaction."""
    with transaction(rt.sessions) as session:
        caller = Caller(tenant_id=tenant_id, key_id=None, role="agent", actor="payments-test")
        return vault_for(rt).detokenize(session, caller=caller, token=token, purpose=purpose,
                                        policies=rt.policies_for(session, tenant_id))


def luhn_complete(body: str) -> str:
    """`body` plus its Luhn check digit."""
    from guard.pci.cards import luhn_ok

    return next(body + d for d in "0123456789" if luhn_ok(body + d))
