"""The redaction detector: cards typed or spoken are found; ordinary numbers stay untouched."""

from __future__ import annotations

import pytest

from guard.logs import mask_pans
from guard.pci.redact import find, redact


@pytest.mark.parametrize("text", [
    "card 4242424242424242 thanks",
    "card 4242 4242 4242 4242 thanks",
    "card 4242-4242-4242-4242",
    "card 4242.4242.4242.4242",
    "card 4242 4242\n4242 4242",
    "card 42424242\r\n42424242",
    "3782 822463 10005",
    "it's four two four two four two four two four two four two four two four two",
    "five five five five, five five five five, five five five five, four four four four",
    "four two four two, uh, four two four two four two four two four two four two",
    "forty-two forty-two forty-two forty-two forty-two forty-two forty-two forty-two",
    "forty two forty two forty two forty two forty two forty two forty two forty two",
    "six oh one one one one one one one one one one one one one seven",
    "six zero one one, triple one, one, one one one one, one one one seven",
    "double five double five double five double five double five double five four four four four",
    "FOUR TWO FOUR TWO 4242 four two four two 4242",
])
def test_cards_are_found(text: str) -> None:
    result = redact(text)
    assert [f.kind for f in result.findings if f.kind == "pan"] == ["pan"]
    digits = "".join(ch for ch in result.text if ch.isdigit())
    assert len(digits) <= 4


@pytest.mark.parametrize(("text", "kinds"), [
    ("4242 4242 4242 4242 08/27 737", ["pan", "expiry", "cvc"]),
    ("4242 4242 4242 4242 08 27 737", ["pan", "expiry", "cvc"]),
    ("4242 4242 4242 4242 1234", ["pan", "cvc"]),
    ("four two four two four two four two four two four two four two four two, and 737", ["pan", "cvc"]),
    ("5555 5555 5555 4444, that's it, the back says 123", ["pan", "cvc"]),
    ("four two four two four two four two four two four two four two four two seven three seven",
     ["pan", "cvc"]),
    ("card 4242424242424242 exp 12/27 cvv 123", ["pan", "expiry", "cvc"]),
    ("the security code is one two three", ["cvc"]),
    ("CVV: 1234", ["cvc"]),
    ("it expires oh eight twenty seven", ["expiry"]),
    ("expiration date 08/2027", ["expiry"]),
    ("valid thru August 2027", ["expiry"]),
    ("SSN 123-45-6789", ["ssn"]),
    ("ssn is 123 45 6789", ["ssn"]),
    ("my social security number is one two three four five six seven eight nine", ["ssn"]),
])
def test_cvc_expiry_ssn_in_context(text: str, kinds: list[str]) -> None:
    assert [f.kind for f in find(text)] == kinds


@pytest.mark.parametrize("text", [
    "4242 4242 4242 4241",                       # fails Luhn
    "call me at 555-123-4567 or (212) 555-0199",
    "+1 415 555 2671 and +44 20 7946 0958",
    "paid $1,234.56 on 2026-11-23 at 10:30",
    "order 123456789, ticket 88231, invoice 2026-000123",
    "meeting on 12/25 with 3 people",
    "one moment please, oh I see, two weeks ago",
    "tracking 1Z999AA10123456784",
    "the code is 123",                           # "code" alone is not a CVC keyword
    "room 101, floor 12, 000-00-0000",
])
def test_ordinary_numbers_stay(text: str) -> None:
    assert redact(text).text == text


def test_offsets_point_into_the_original_text() -> None:
    text = "Agent: card?\nCustomer: 5555 5555 5555 4444 exp 01/28\n"
    for f in find(text):
        assert text[f.start:f.end].strip() == text[f.start:f.end]
    pan = next(f for f in find(text) if f.kind == "pan")
    assert text[pan.start:pan.end] == "5555 5555 5555 4444"


def test_log_filter_uses_the_detector() -> None:
    spoken = " ".join(["four two"] * 8)
    assert mask_pans(spoken) == "[CARD ****4242]"
    assert mask_pans("card 4242-4242-4242-4242") == "card [CARD ****4242]"
