"""Card rules: the IIN brand table, every validation failure, and Luhn properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.pci.cards import (
    CardRuleError,
    bin_of,
    brand_for,
    luhn_ok,
    validate_cvc,
    validate_expiry,
    validate_pan,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def with_check_digit(body: str) -> str:
    """Append the Luhn check digit to `body`."""
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


# Published processor test cards only (never a real card).
@pytest.mark.parametrize(("number", "brand"), [
    ("4242424242424242", "visa"),
    ("4000 0566 5566 5556", "visa"),
    ("4222222222222", "visa"),
    ("5555555555554444", "mastercard"),
    ("2223003122003222", "mastercard"),
    ("5105105105105100", "mastercard"),
    ("378282246310005", "amex"),
    ("371449635398431", "amex"),
    ("6011111111111117", "discover"),
    ("6011000990139424", "discover"),
    ("3566002020360505", "jcb"),
    ("3056-9300-0902-0004", "diners"),
    ("36227206271667", "diners"),
    ("6200000000000005", "unionpay"),
])
def test_brand_table_published_cards(number: str, brand: str) -> None:
    pan, b = validate_pan(number)
    assert b.name == brand
    assert pan == number.replace(" ", "").replace("-", "")


# IIN range edges, where no published test card exists: numbers are built at test time from
# the range's prefix, zero-filled, plus a Luhn check digit (synthetic, not written down here).
@pytest.mark.parametrize(("prefix", "length", "brand"), [
    ("2221", 16, "mastercard"), ("2720", 16, "mastercard"), ("51", 16, "mastercard"),
    ("55", 16, "mastercard"), ("34", 15, "amex"), ("37", 15, "amex"),
    ("6011", 16, "discover"), ("644", 16, "discover"), ("649", 16, "discover"), ("65", 16, "discover"),
    ("3528", 16, "jcb"), ("3589", 16, "jcb"),
    ("300", 14, "diners"), ("305", 14, "diners"), ("36", 14, "diners"), ("38", 14, "diners"),
    ("39", 14, "diners"), ("62", 16, "unionpay"), ("62", 19, "unionpay"),
    ("5018", 16, "maestro"), ("6304", 16, "maestro"), ("6759", 16, "maestro"), ("6762", 19, "maestro"),
])
def test_brand_table_range_edges(prefix: str, length: int, brand: str) -> None:
    number = with_check_digit(prefix.ljust(length - 1, "0"))
    pan, b = validate_pan(number)
    assert (pan, b.name) == (number, brand)




@pytest.mark.parametrize(("number", "rule"), [
    ("4242424242424241", "luhn_failed"),
    ("5555555555554445", "luhn_failed"),
    ("378282246310006", "luhn_failed"),
    ("42424242424", "bad_length"),            # 11 digits
    ("42424242424242424242", "bad_length"),   # 20 digits
    (with_check_digit("42424242424242"), "bad_length"),     # 15-digit Visa
    (with_check_digit("3782822463100"), "bad_length"),      # 14-digit Amex
    (with_check_digit("55555555555544444"), "bad_length"),  # 18-digit Mastercard
    (with_check_digit("1" * 15), "unsupported_brand"),
    (with_check_digit("9" * 15), "unsupported_brand"),
    (with_check_digit("2220" + "0" * 11), "unsupported_brand"),  # just below Mastercard 2221
    (with_check_digit("2721" + "0" * 11), "unsupported_brand"),  # just above 2720
    (with_check_digit("306" + "0" * 12), "unsupported_brand"),   # Diners stops at 305
    ("4242 4242 4242 424a", "not_digits"),
    ("4242/4242/4242/4242", "not_digits"),
    ("\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662",
     "non_ascii_digits"),
    ("\uff14\uff12\uff14\uff12424242424242424242"[:16], "non_ascii_digits"),
    ("  - -", "missing"),
])
def test_validation_failures(number: str, rule: str) -> None:
    with pytest.raises(CardRuleError) as exc:
        validate_pan(number)
    assert exc.value.rule == rule
    assert exc.value.field == "number"
    assert number not in exc.value.message


@pytest.mark.parametrize(("month", "year", "rule"), [
    (10, 2026, "expired"), (12, 2025, "expired"), (13, 2027, "bad_month"), (0, 2027, "bad_month"),
    (1, 2047, "too_far_ahead"), (1, 27, "bad_year"),
])
def test_expiry_failures(month: int, year: int, rule: str) -> None:
    with pytest.raises(CardRuleError) as exc:
        validate_expiry(month, year, now=NOW, max_years_ahead=20)
    assert exc.value.rule == rule


def test_expiry_is_valid_through_the_end_of_its_month() -> None:
    validate_expiry(11, 2026, now=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), max_years_ahead=20)
    with pytest.raises(CardRuleError):
        validate_expiry(11, 2026, now=datetime(2026, 12, 1, 0, 0, tzinfo=UTC), max_years_ahead=20)
    validate_expiry(12, 2046, now=NOW, max_years_ahead=20)


@pytest.mark.parametrize(("cvc", "number", "ok"), [
    ("123", "4242424242424242", True), ("1234", "378282246310005", True),
    ("123", "378282246310005", False), ("1234", "4242424242424242", False),
    ("12a", "4242424242424242", False), ("\u0661\u0662\u0663", "4242424242424242", False),
])
def test_cvc_lengths(cvc: str, number: str, ok: bool) -> None:
    _, brand = validate_pan(number)
    if ok:
        assert validate_cvc(cvc, brand) == cvc
    else:
        with pytest.raises(CardRuleError) as exc:
            validate_cvc(cvc, brand)
        assert exc.value.rule == "bad_cvc"


def test_bin_only_for_long_pans() -> None:
    assert bin_of("4242424242424242") == "424242"
    assert bin_of("378282246310005") is None
    assert bin_of("36227206271667") is None


def test_longest_prefix_wins() -> None:
    discover = brand_for(with_check_digit("6011" + "0" * 11))
    assert discover is not None and discover.name == "discover"
    assert brand_for("6762000000000000").name == "maestro"  # type: ignore[union-attr]
    assert brand_for("7000000000000000") is None


_pans = st.builds(lambda prefix, body, n: with_check_digit((prefix + body)[: n - 1]),
                  st.sampled_from(["4", "51", "55", "2221", "2720", "34", "37", "6011", "65", "3528", "62"]),
                  st.text("0123456789", min_size=18, max_size=18), st.integers(12, 19))


@settings(max_examples=200, derandomize=True, deadline=None)
@given(_pans, st.data())
def test_any_single_digit_change_fails_luhn(pan: str, data: st.DataObject) -> None:
    assert luhn_ok(pan)
    i = data.draw(st.integers(0, len(pan) - 1))
    d = data.draw(st.sampled_from([c for c in "0123456789" if c != pan[i]]))
    assert not luhn_ok(pan[:i] + d + pan[i + 1:])
