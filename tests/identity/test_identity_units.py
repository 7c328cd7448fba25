"""Unit tests: answer normalization, scrypt hashing, sealing, masks, TOTP math, webhook signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.auth import factors as fx
from guard.auth.notifier import sign, verify_signature
from guard.keyring import Keyring

CHEAP = fx.ScryptHasher(log2_n=4, r=8, p=1)


@pytest.mark.parametrize(("a", "b"), [
    ("José  Smith ", "jose smith"), ("MÜNCHEN", "munchen"), ("São\tPaulo", "sao paulo"),
    ("\uff32\uff45\uff58", "rex"),  # full-width letters (NFKD)
])
def test_answers_normalize(a: str, b: str) -> None:
    assert fx.normalize_answer(a) == b


@settings(derandomize=True, max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_normalization_is_idempotent_and_trimmed(text: str) -> None:
    once = fx.normalize_answer(text)
    assert fx.normalize_answer(once) == once
    assert once == once.strip() and "  " not in once
    assert fx.normalize_answer(f"  {text}\t") == once


def test_scrypt_hash_is_salted_and_checks_normalized_answers() -> None:
    h1, h2 = CHEAP.hash("Rex the Dog"), CHEAP.hash("Rex the Dog")
    assert h1 != h2 and h1.startswith("scrypt$4$8$1$")
    assert CHEAP.verify("  rex THE dog", h1)
    assert not CHEAP.verify("rex the cat", h1)
    assert not CHEAP.verify("anything", None)  # the dummy never matches
    assert not CHEAP.verify("rex", "garbage")


def test_production_cost_is_strong() -> None:
    p = fx.ScryptHasher.__dataclass_fields__
    # OWASP: N=2**15, r=8, p=3 is an accepted minimum (same work as 2**17 with p=1).
    assert (p["log2_n"].default, p["r"].default, p["p"].default) == (15, 8, 3)


def test_sealing_binds_owner(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "k")
    sealed = fx.seal(ring, "+14155550123", tenant_id="t1", customer_ref="c1", kind="phone")
    assert b"4155550123" not in sealed.ciphertext
    assert fx.unseal(ring, sealed, tenant_id="t1", customer_ref="c1", kind="phone") == "+14155550123"
    for other in ({"tenant_id": "t2", "customer_ref": "c1", "kind": "phone"},
                  {"tenant_id": "t1", "customer_ref": "c2", "kind": "phone"},
                  {"tenant_id": "t1", "customer_ref": "c1", "kind": "email"}):
        with pytest.raises(InvalidTag):
            fx.unseal(ring, sealed, **other)


def test_masks() -> None:
    assert fx.mask_phone("+14155550123") == "+1********23"
    assert fx.mask_email("alice@example.com") == "a***@example.com"
    assert fx.normalize_phone("(415) 555-0123") == "+14155550123"
    assert fx.normalize_phone("12") is None
    assert fx.normalize_email("Alice@Example.COM") == "alice@example.com"
    assert fx.normalize_email("nope") is None


def test_totp_rfc6238_vector() -> None:
    # RFC 6238 appendix B, SHA-1, T=59 -> 94287082 (8 digits); 6 digits: 287082.
    secret = b"12345678901234567890"
    assert fx.totp_code(secret, at=59, digits=8) == "94287082"
    assert fx.totp_match(secret, "287082", at=59, step=30, drift=1) == 1
    assert fx.totp_match(secret, "287082", at=59 + 30, step=30, drift=1) == 1
    assert fx.totp_match(secret, "287082", at=59 + 60, step=30, drift=1) is None


def test_totp_secret_parsing() -> None:
    assert fx.parse_totp_secret("JBSWY3DPEHPK3PXP") is None  # 80 bits: too short
    assert fx.parse_totp_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ") == b"12345678901234567890"
    assert fx.parse_totp_secret("not base32!") is None


def test_codes_are_uniform_digits() -> None:
    codes = {fx.new_code(6) for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150


def test_webhook_signature() -> None:
    header = sign(b"k" * 32, b'{"a":1}', 1_700_000_000)
    assert verify_signature(b"k" * 32, b'{"a":1}', header, now=1_700_000_100)
    assert not verify_signature(b"k" * 32, b'{"a":2}', header, now=1_700_000_100)
    assert not verify_signature(b"k" * 32, b'{"a":1}', header, now=1_700_001_000)
    assert not verify_signature(b"k" * 32, b'{"a":1}', "garbage", now=1_700_000_000)
