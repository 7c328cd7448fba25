"""Card routes, tenancy, the CVC store, detokenization and ciphertext binding."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from guard.audit.models import AuditEvent
from guard.audit.service import event_to_api
from guard.clock import FixedClock
from guard.db import transaction
from guard.errors import Denied
from guard.pci.models import VaultCard
from guard.pci.vault import CardIntegrityError, CardNotFound, vault_for
from guard.runtime import Runtime
from tests.conftest import TenantKeys
from tests.pci.helpers import detokenize, luhn_complete, tokenize


def events(rt: Runtime, tenant_id: str, action: str) -> list[Any]:
    """A tenant's events of one action, as served to auditors (details and reasons parsed)."""
    with transaction(rt.sessions) as s:
        rows = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == tenant_id,
                                                  AuditEvent.action == action)
                         .order_by(AuditEvent.seq)).scalars()
        return [SimpleNamespace(**event_to_api(r)) for r in rows]


def test_tokenize_answers_the_masked_view(client: FlaskClient, tenant: TenantKeys, rt: Runtime) -> None:
    r = tokenize(client, tenant.headers("agent"), "4242 4242 4242 4242")
    assert r.status_code == 201, r.json
    body = r.json
    assert set(body) >= {"token", "brand", "last4", "bin", "exp_month", "exp_year", "fingerprint",
                         "created_at"}
    assert body["token"].startswith("tok_") and len(body["token"]) >= 4 + 22
    assert (body["brand"], body["last4"], body["bin"]) == ("visa", "4242", "424242")
    assert "4242424242424242" not in r.get_data(as_text=True)
    ev = events(rt, tenant.id, "pci.card.tokenize")[-1]
    assert ev.details["token"] == body["token"] and ev.details["fp_prefix"] == body["fingerprint"][:12]
    # Short PAN: no BIN.
    r = tokenize(client, tenant.headers("agent"), "378282246310005")
    assert r.json["bin"] is None and r.json["last4"] == "0005"


def test_same_card_same_token_and_fingerprints_per_tenant(client: FlaskClient, tenant: TenantKeys,
                                                          other_tenant: TenantKeys) -> None:
    a1 = tokenize(client, tenant.headers("agent"), "5555555555554444")
    a2 = tokenize(client, tenant.headers("ai_agent"), "5555-5555-5555-4444")
    assert (a1.status_code, a2.status_code) == (201, 200)
    assert a1.json["token"] == a2.json["token"] and a2.json["already_on_file"] is True
    a3 = tokenize(client, tenant.headers("agent"), "5555555555554444", exp_year=2029)
    assert a3.json["token"] != a1.json["token"]
    assert a3.json["fingerprint"] == a1.json["fingerprint"]
    b = tokenize(client, other_tenant.headers("agent"), "5555555555554444")
    assert b.json["token"] != a1.json["token"]
    assert b.json["fingerprint"] != a1.json["fingerprint"]


@pytest.mark.parametrize(("body", "field", "rule"), [
    ({"number": "4242424242424241"}, "number", "luhn_failed"),
    # Luhn-valid but in no brand's IIN range (built at test time, prefix 1, zero-filled).
    ({"number": luhn_complete("1" + "0" * 14)}, "number", "unsupported_brand"),
    ({"number": "424242424242"}, "number", "bad_length"),
    ({"number": "\uff14\uff12" * 8}, "number", "non_ascii_digits"),
    ({"exp_year": 2025}, "exp_year", "expired"),
    ({"exp_year": 2090}, "exp_year", "too_far_ahead"),
    ({"cvc": "12"}, "cvc", "bad_cvc"),
    ({"number": "378282246310005", "cvc": "123"}, "cvc", "bad_cvc"),
])
def test_bad_cards_get_422_naming_field_and_rule(client: FlaskClient, tenant: TenantKeys, rt: Runtime,
                                                 body: dict[str, str], field: str, rule: str) -> None:
    payload = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2028, **body}
    r = client.post("/v1/cards", json=payload, headers=tenant.headers("agent"))
    assert r.status_code == 422
    assert r.mimetype == "application/problem+json"
    err = r.json["errors"][0]
    assert err["loc"] == ["body", field] and err["type"] == rule
    assert payload["number"] not in r.get_data(as_text=True)
    assert events(rt, tenant.id, "pci.card.tokenize")[-1].reasons == [rule]


def test_card_number_in_wrong_fields_is_refused_without_echo(client: FlaskClient, tenant: TenantKeys) -> None:
    h = tenant.headers("agent")
    for body in ({"number": "4242424242424242", "exp_month": 12, "exp_year": 2028,
                  "customer_ref": "cust 4000 0566 5566 5556"},
                 {"number": "4242424242424242", "exp_month": 12, "exp_year": 2028, "pan": "4000056655665556"},
                 {"number": 4000056655665556, "exp_month": 12, "exp_year": 2028},
                 {"number": "4242424242424242", "exp_month": "4000056655665556", "exp_year": 2028}):
        r = client.post("/v1/cards", json=body, headers=h)
        assert r.status_code == 422
        assert "4000056655665556" not in r.get_data(as_text=True)
        assert "5566" not in r.get_data(as_text=True)


def test_roles(client: FlaskClient, tenant: TenantKeys) -> None:
    tok = tokenize(client, tenant.headers("agent")).json["token"]
    for role in ("dialer", "auditor", "privacy_officer", "admin"):
        assert tokenize(client, tenant.headers(role)).status_code == 403, role
    for role in ("agent", "ai_agent", "supervisor", "auditor"):
        assert client.get(f"/v1/cards/{tok}", headers=tenant.headers(role)).status_code == 200, role
    for role in ("dialer", "privacy_officer", "admin"):
        assert client.get(f"/v1/cards/{tok}", headers=tenant.headers(role)).status_code == 403, role
    for role in ("agent", "ai_agent", "auditor", "dialer", "admin"):
        assert client.delete(f"/v1/cards/{tok}", headers=tenant.headers(role)).status_code == 403, role
    for role in ("dialer", "auditor", "privacy_officer", "admin"):
        assert client.post("/v1/redact", json={"text": "x"}, headers=tenant.headers(role)).status_code == 403


def test_get_and_delete(client: FlaskClient, tenant: TenantKeys, rt: Runtime) -> None:
    tok = tokenize(client, tenant.headers("agent"), "6011111111111117").json["token"]
    r = client.get(f"/v1/cards/{tok}", headers=tenant.headers("auditor"))
    assert r.status_code == 200 and r.json["last4"] == "1117" and r.json["brand"] == "discover"
    assert events(rt, tenant.id, "pci.card.view")[-1].details["token"] == tok
    r = client.delete(f"/v1/cards/{tok}", headers=tenant.headers("privacy_officer"))
    assert r.status_code == 200 and r.json == {"token": tok, "deleted": True}
    with transaction(rt.sessions) as s:
        assert s.get(VaultCard, tok) is None
    assert client.get(f"/v1/cards/{tok}", headers=tenant.headers("agent")).status_code == 404
    with pytest.raises(CardNotFound):
        detokenize(rt, tenant.id, tok)
    assert events(rt, tenant.id, "pci.card.delete")[-1].details["token"] == tok


def test_cross_tenant_is_404(client: FlaskClient, tenant: TenantKeys, other_tenant: TenantKeys,
                             rt: Runtime) -> None:
    tok = tokenize(client, tenant.headers("agent"), "3566002020360505").json["token"]
    assert client.get(f"/v1/cards/{tok}", headers=other_tenant.headers("agent")).status_code == 404
    r = client.delete(f"/v1/cards/{tok}", headers=other_tenant.headers("supervisor"))
    assert r.status_code == 404 and r.json["code"] == "card_not_found"
    with pytest.raises(CardNotFound):
        detokenize(rt, other_tenant.id, tok)  # what a charge by tenant B would do
    assert detokenize(rt, tenant.id, tok).pan == "3566002020360505"


def test_detokenize_is_audited_with_its_purpose(client: FlaskClient, tenant: TenantKeys, rt: Runtime) -> None:
    tok = tokenize(client, tenant.headers("agent")).json["token"]
    secret = detokenize(rt, tenant.id, tok, purpose="charge")
    assert (secret.pan, secret.exp_month, secret.exp_year, secret.brand) == \
        ("4242424242424242", 12, 2028, "visa")
    assert "4242424242424242" not in repr(secret)
    ev = events(rt, tenant.id, "pci.card.detokenize")[-1]
    assert ev.details["purpose"] == "charge" and ev.details["token"] == tok
    with pytest.raises(Denied):
        detokenize(rt, tenant.id, tok, purpose="curiosity")


def test_swapped_ciphertext_is_refused_and_audited(client: FlaskClient, tenant: TenantKeys,
                                                   rt: Runtime) -> None:
    t1 = tokenize(client, tenant.headers("agent"), "4242424242424242").json["token"]
    t2 = tokenize(client, tenant.headers("agent"), "5555555555554444").json["token"]
    with transaction(rt.sessions) as s:
        c1, c2 = s.get(VaultCard, t1), s.get(VaultCard, t2)
        assert c1 is not None and c2 is not None
        b1, b2 = c1.ciphertext, c2.ciphertext
        s.execute(update(VaultCard).where(VaultCard.token == t1).values(ciphertext=b2))
        s.execute(update(VaultCard).where(VaultCard.token == t2).values(ciphertext=b1))
    for tok in (t1, t2):
        with pytest.raises(CardIntegrityError):
            detokenize(rt, tenant.id, tok)
    failures = events(rt, tenant.id, "pci.card.integrity_failure")
    assert [e.details["token"] for e in failures[-2:]] == [t1, t2]
    assert all(e.reasons == ["ciphertext_rejected"] for e in failures)


def test_cvc_is_kept_encrypted_taken_once_and_expires(client: FlaskClient, tenant: TenantKeys, rt: Runtime,
                                                      clock: FixedClock) -> None:
    vault = vault_for(rt)
    r = tokenize(client, tenant.headers("agent"), "4000056655665556", cvc="737")
    assert r.status_code == 201 and r.json["cvc_captured"] is True
    tok = r.json["token"]
    assert vault.take_cvc(tenant_id=tenant.id, token=tok) == "737"
    assert vault.take_cvc(tenant_id=tenant.id, token=tok) is None
    tokenize(client, tenant.headers("agent"), "4000056655665556", cvc="738")
    if vault.cvc.shared:
        key = vault.cvc.prefix + f"{tenant.id}:{tok}"  # type: ignore[attr-defined]
        raw = vault.cvc.client.get(key)  # type: ignore[attr-defined]
        assert raw is not None and b"738" not in raw
        assert 0 < vault.cvc.client.ttl(key) <= 600  # type: ignore[attr-defined]
    else:
        clock.advance(seconds=601)
        assert vault.take_cvc(tenant_id=tenant.id, token=tok) is None
        tokenize(client, tenant.headers("agent"), "4000056655665556", cvc="739")
        clock.advance(seconds=599)
        assert vault.take_cvc(tenant_id=tenant.id, token=tok) == "739"


def test_cvc_capture_refused_under_several_workers_without_shared_store(
        client: FlaskClient, tenant: TenantKeys, rt: Runtime) -> None:
    body = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2028, "cvc": "123"}
    r = client.post("/v1/cards", json=body, headers=tenant.headers("agent"),
                    environ_overrides={"wsgi.multiprocess": True})
    if vault_for(rt).cvc.shared:
        assert r.status_code in (200, 201)
    else:
        assert r.status_code == 409 and r.json["code"] == "cvc_capture_unavailable"
        assert "123" not in r.json["detail"]


hyp_pans = st.builds(lambda prefix, body, n: luhn_complete((prefix + body)[: n - 1]),
                     st.sampled_from(["4", "51", "2720", "34", "6011", "3528", "62"]),
                     st.text("0123456789", min_size=18, max_size=18), st.sampled_from([16, 19]))


@settings(max_examples=25, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=hyp_pans)
def test_tokenize_detokenize_round_trip(pan: str, client: FlaskClient, tenant: TenantKeys,
                                        rt: Runtime) -> None:
    from guard.pci.cards import brand_for

    brand = brand_for(pan)
    if brand is None or len(pan) not in brand.lengths:
        return  # not a vaultable card (checked by the validation tables)
    r = tokenize(client, tenant.headers("agent"), pan)
    assert r.status_code in (200, 201), r.json
    assert detokenize(rt, tenant.id, r.json["token"]).pan == pan
