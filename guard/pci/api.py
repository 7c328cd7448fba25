"""HTTP routes of the card vault and the redactor (translation only: logic is in vault/redact)."""

from __future__ import annotations

from collections import Counter

from flask import Blueprint, request

from guard.audit.service import subject_pseudonym
from guard.errors import ValidationFailed
from guard.pci import redact as redactor
from guard.pci.policy import VaultPolicy
from guard.pci.schemas import (
    CardCreate,
    CardDeleted,
    CardRead,
    FindingRead,
    RedactRequest,
    RedactResponse,
)
from guard.pci.vault import CardView, vault_for
from guard.web import RequestContext, endpoint

bp = Blueprint("cards", __name__)
# JSON escaping can grow text up to 6x (\uXXXX); the text itself is capped at 1 MiB characters.
REDACT_MAX_BODY = 8 * 1024 * 1024


def _read(view: CardView, *, already: bool = False, cvc: bool = False) -> CardRead:
    return CardRead(token=view.token, brand=view.brand, last4=view.last4, bin=view.bin,
                    exp_month=view.exp_month, exp_year=view.exp_year, fingerprint=view.fingerprint,
                    created_at=view.created_at, already_on_file=already, cvc_captured=cvc)


def _policy(c: RequestContext) -> VaultPolicy:
    policy = c.policies.get("vault")
    assert isinstance(policy, VaultPolicy)
    return policy


def _subject(c: RequestContext, customer_ref: str | None) -> str | None:
    if not customer_ref:
        return None
    return subject_pseudonym(c.session, index_key=c.rt.keyring.current("subject_index").material,
                             tenant_id=c.tenant_id, identifiers={"customer_ref": customer_ref},
                             clock=c.clock)


@endpoint(bp, "/cards", methods=("POST",), permission="cards.tokenize", body=CardCreate,
          response=CardRead, status=201, action="pci.card.tokenize", requires_actor=True)
def tokenize(c: RequestContext, body: CardCreate) -> tuple[CardRead, int]:
    """Tokenize a card (same card and expiry again: the existing token, 200)."""
    if body.customer_ref and redactor.find(body.customer_ref):
        # A card number in the wrong field must not be stored or echoed anywhere.
        raise ValidationFailed([{"loc": ["body", "customer_ref"], "type": "card_data_in_field",
                                 "msg": "customer_ref must not contain card data"}])
    vault = vault_for(c.rt)
    result = vault.tokenize(
        c.session, tenant_id=c.tenant_id, number=body.number, exp_month=body.exp_month,
        exp_year=body.exp_year, cvc=body.cvc, customer_ref=body.customer_ref, policy=_policy(c),
        multiprocess=bool(request.environ.get("wsgi.multiprocess", False)))
    card = result.card
    c.audit("pci.card.tokenize", "ok", reasons=["created" if result.created else "already_on_file"],
            subject=_subject(c, body.customer_ref),
            details={"token": card.token, "fp_prefix": card.fp_prefix, "brand": card.brand,
                     "cvc_captured": result.cvc_captured})
    return _read(card, already=not result.created, cvc=result.cvc_captured), (201 if result.created else 200)


@endpoint(bp, "/cards/<token>", permission="cards.read", response=CardRead, action="pci.card.view")
def get_card(c: RequestContext, token: str) -> CardRead:
    """The masked view of a card (no route ever returns a full card number)."""
    card = vault_for(c.rt).card(c.session, tenant_id=c.tenant_id, token=token)
    c.audit("pci.card.view", "ok", details={"token": card.token, "fp_prefix": card.fp_prefix})
    return _read(card)


@endpoint(bp, "/cards/<token>", methods=("DELETE",), permission="cards.delete",
          response=CardDeleted, action="pci.card.delete", requires_actor=True)
def delete_card(c: RequestContext, token: str) -> CardDeleted:
    """Destroy a card's ciphertext (the token stops resolving)."""
    card = vault_for(c.rt).delete(c.session, tenant_id=c.tenant_id, token=token)
    c.audit("pci.card.delete", "ok", details={"token": card.token, "fp_prefix": card.fp_prefix})
    return CardDeleted(token=card.token)


@endpoint(bp, "/redact", methods=("POST",), permission="text.redact", body=RedactRequest,
          response=RedactResponse, action="pci.text.redact", max_body=REDACT_MAX_BODY)
def redact(c: RequestContext, body: RedactRequest) -> RedactResponse:
    """Mask card numbers (typed or spoken), CVCs, expiry dates and SSNs in free text."""
    result = redactor.redact(body.text)
    counts = Counter(f.kind for f in result.findings)
    c.audit("pci.text.redact", "ok", details={"chars": len(body.text), "found": dict(counts)})
    return RedactResponse(text=result.text, findings=[
        FindingRead(kind=f.kind, start=f.start, end=f.end)
        for f in result.findings])
