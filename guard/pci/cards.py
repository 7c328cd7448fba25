"""Card number rules: normalization, Luhn, the IIN brand table, expiry and CVC checks.

Pure functions (no database, no flask): the vault, the redactor and the log filter share them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

# Separators an agent or a form may put between digit groups.
_SEPARATORS = re.compile(r"[ \-]")
_ASCII_DIGITS = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Brand:
    """A card brand: its IIN ranges and the PAN lengths it issues."""

    name: str
    ranges: tuple[tuple[str, str], ...]  # inclusive prefix ranges of equal width, e.g. ("2221", "2720")
    lengths: frozenset[int]
    cvc_length: int = 3


# IIN table (ISO/IEC 7812 issuer identification numbers as published by each network).
BRANDS: tuple[Brand, ...] = (
    Brand("visa", (("4", "4"),), frozenset({13, 16, 19})),
    Brand("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    Brand("amex", (("34", "34"), ("37", "37")), frozenset({15}), cvc_length=4),
    Brand("discover", (("6011", "6011"), ("644", "649"), ("65", "65")), frozenset(range(16, 20))),
    Brand("jcb", (("3528", "3589"),), frozenset(range(16, 20))),
    Brand("diners", (("300", "305"), ("36", "36"), ("38", "39")), frozenset(range(14, 20))),
    Brand("unionpay", (("62", "62"),), frozenset(range(16, 20))),
    Brand("maestro", (("5018", "5018"), ("5020", "5020"), ("5038", "5038"), ("5893", "5893"),
                      ("6304", "6304"), ("6759", "6759"), ("6761", "6763"), ("56", "58")),
          frozenset(range(12, 20))),
)

# (prefix width, low, high, brand), longest prefix first so 6011 (Discover) wins over 6 (none)
# and 2221-2720 (Mastercard) is tested before shorter ranges.
_PREFIXES: tuple[tuple[int, int, int, Brand], ...] = tuple(sorted(
    ((len(lo), int(lo), int(hi), b) for b in BRANDS for lo, hi in b.ranges),
    key=lambda t: -t[0]))
BRAND_NAMES = tuple(b.name for b in BRANDS)
MIN_PAN, MAX_PAN = 12, 19


class CardRuleError(ValueError):
    """A card field broke a rule; `rule` is the stable reason code, `field` the body field."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule
        self.message = message


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = (ord(ch) - 48) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def brand_for(digits: str) -> Brand | None:
    """The brand whose IIN range holds the PAN's prefix (longest prefix first), or None."""
    for width, lo, hi, brand in _PREFIXES:
        if len(digits) >= width and lo <= int(digits[:width]) <= hi:
            return brand
    return None


def normalize_pan(raw: str) -> str:
    """Strip spaces and dashes; refuse anything but ASCII digits (never guess at other digits)."""
    stripped = _SEPARATORS.sub("", raw)
    if not stripped:
        raise CardRuleError("number", "missing", "number is empty")
    if not _ASCII_DIGITS.match(stripped):
        if all(ch.isdigit() for ch in stripped):
            raise CardRuleError("number", "non_ascii_digits",
                                "number must use ASCII digits 0-9 (other scripts' digits are refused)")
        raise CardRuleError("number", "not_digits",
                            "number may hold only digits, spaces and dashes")
    return stripped


def validate_pan(raw: str) -> tuple[str, Brand]:
    """Normalize and check a PAN: length, Luhn, brand and the brand's lengths."""
    pan = normalize_pan(raw)
    if not MIN_PAN <= len(pan) <= MAX_PAN:
        raise CardRuleError("number", "bad_length", f"number must have {MIN_PAN}-{MAX_PAN} digits")
    if not luhn_ok(pan):
        raise CardRuleError("number", "luhn_failed", "number fails the Luhn check")
    brand = brand_for(pan)
    if brand is None:
        raise CardRuleError("number", "unsupported_brand", "number belongs to no supported card brand")
    if len(pan) not in brand.lengths:
        raise CardRuleError("number", "bad_length",
                            f"a {brand.name} number has {_lengths(brand.lengths)} digits")
    return pan, brand


def _lengths(lengths: frozenset[int]) -> str:
    ls = sorted(lengths)
    if ls == list(range(ls[0], ls[-1] + 1)) and len(ls) > 2:
        return f"{ls[0]}-{ls[-1]}"
    return " or ".join(str(n) for n in ls)


def validate_expiry(exp_month: int, exp_year: int, *, now: datetime, max_years_ahead: int) -> None:
    """A card is valid through the last moment of its expiry month (UTC); refuse absurd years."""
    if not 1 <= exp_month <= 12:
        raise CardRuleError("exp_month", "bad_month", "exp_month must be 1-12")
    if not 1000 <= exp_year <= 9999:
        raise CardRuleError("exp_year", "bad_year", "exp_year must have four digits")
    now = now.astimezone(UTC)
    if (exp_year, exp_month) < (now.year, now.month):
        raise CardRuleError("exp_year", "expired", "the card has expired")
    if exp_year > now.year + max_years_ahead:
        raise CardRuleError("exp_year", "too_far_ahead",
                            f"exp_year is more than {max_years_ahead} years ahead")


def validate_cvc(cvc: str, brand: Brand) -> str:
    """A CVC has exactly the brand's number of ASCII digits (4 for Amex, else 3)."""
    if not _ASCII_DIGITS.match(cvc) or len(cvc) != brand.cvc_length:
        raise CardRuleError("cvc", "bad_cvc", f"a {brand.name} CVC has {brand.cvc_length} digits")
    return cvc


def bin_of(pan: str) -> str | None:
    """The first six digits, only for PANs of 16+ digits (a short PAN is never nearly disclosed)."""
    return pan[:6] if len(pan) >= 16 else None


def is_card_like(digits: str) -> bool:
    """Redaction's test: 12-19 digits, Luhn-valid, and a known brand or a card-issuing MII (2-6).

    Wider than `validate_pan` on purpose: a number of a brand Guard does not vault is still
    a card number that must not survive in free text.
    """
    n = len(digits)
    if not MIN_PAN <= n <= MAX_PAN or not luhn_ok(digits):
        return False
    brand = brand_for(digits)
    if brand is not None and n in brand.lengths:
        return True
    return n >= 13 and digits[0] in "23456"
