"""Where a number rings: parsing, candidate time zones and states, state holidays.

Time zones come from `phonenumbers` (exchange-level where it knows better than the area code)
and from the `zipcodes` package's offline ZIP table; state holidays from `holidays`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date
from zoneinfo import ZoneInfo, available_timezones

import holidays
import phonenumbers
import zipcodes
from holidays.countries.united_states import UnitedStates
from phonenumbers import PhoneNumberType, geocoder
from phonenumbers import timezone as pn_timezone

__all__ = ["UTC", "HolidayDataMissing", "InvalidNumber", "ParsedNumber", "parse", "state_holidays",
           "state_zones", "zip_info", "zone"]
_STATE_SUFFIX = re.compile(r",\s*([A-Z]{2})$")
# A number whose zones span more than this many is not tied to a place (toll-free, non-geographic).
_MAX_GEO_ZONES = 6
_NON_DIALABLE = {PhoneNumberType.UNKNOWN, PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST,
                 PhoneNumberType.UAN, PhoneNumberType.PAGER}


@dataclass(frozen=True)
class ParsedNumber:
    """A parsed, valid number and what its digits tell about where it rings."""

    e164: str
    region: str
    area_code: int
    local: int
    zones: frozenset[str]
    state: str | None
    toll_free: bool


class InvalidNumber(ValueError):
    """The input is not a valid, dialable phone number."""


@functools.lru_cache(maxsize=1)
def _valid_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.lru_cache(maxsize=1)
def _state_names() -> dict[str, str]:
    aliases = getattr(UnitedStates, "subdivisions_aliases", {})
    return {str(k): str(v) for k, v in aliases.items()}


def parse(raw: str) -> ParsedNumber:
    """Parse any common format (US default region); InvalidNumber if not valid and dialable."""
    try:
        num = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        raise InvalidNumber("unparseable") from None
    if not phonenumbers.is_valid_number(num):
        raise InvalidNumber("invalid")
    ntype = phonenumbers.number_type(num)
    if ntype in _NON_DIALABLE:
        raise InvalidNumber("not dialable")
    region = phonenumbers.region_code_for_number(num) or ""
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    national = str(num.national_number)
    toll_free = ntype == PhoneNumberType.TOLL_FREE
    valid = _valid_zones()
    zones = frozenset(z for z in pn_timezone.time_zones_for_number(num) if z in valid)
    if toll_free or len(zones) > _MAX_GEO_ZONES:
        zones = frozenset()
    state: str | None = None
    if num.country_code == 1 and not toll_free:
        desc = geocoder.description_for_number(num, "en")
        m = _STATE_SUFFIX.search(desc)
        state = m.group(1) if m else _state_names().get(desc)
    area_code = int(national[:3]) if num.country_code == 1 and len(national) == 10 else 0
    local = int(national[3:]) if area_code else 0
    return ParsedNumber(e164=e164, region=region, area_code=area_code, local=local,
                        zones=zones, state=state, toll_free=toll_free)


@functools.lru_cache(maxsize=1)
def _state_zone_table() -> dict[str, frozenset[str]]:
    valid = _valid_zones()
    out: dict[str, set[str]] = {}
    for row in zipcodes.list_all():  # type: ignore[no-untyped-call]
        tz = row.get("timezone")
        if tz in valid:
            out.setdefault(str(row["state"]), set()).add(str(tz))
    return {k: frozenset(v) for k, v in out.items()}


def state_zones(state: str) -> frozenset[str]:
    """Every time zone a state's ZIP codes use (more than a dozen states span two or more)."""
    return _state_zone_table().get(state.upper(), frozenset())


@functools.lru_cache(maxsize=4096)
def zip_info(zip_code: str) -> tuple[str, str] | None:
    """(state, time zone) of a 5-digit ZIP code, or None if unknown."""
    try:
        rows = zipcodes.matching(zip_code[:5])  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        return None
    for row in rows:
        tz = row.get("timezone")
        if tz in _valid_zones():
            return str(row["state"]), str(tz)
    return None


def is_known_state(state: str) -> bool:
    """Whether `state` is a US state or territory postal code."""
    return state.upper() in set(_state_names().values())


class HolidayDataMissing(LookupError):
    """The holiday library has no data for that state and year."""


@functools.lru_cache(maxsize=512)
def _library_holidays(state: str, year: int) -> frozenset[date]:
    cls = UnitedStates
    if year < cls.start_year or year > cls.end_year or state not in cls.subdivisions:
        raise HolidayDataMissing(f"{state} {year}")
    return frozenset(holidays.country_holidays("US", subdiv=state, years=year).keys())


def state_holidays(state: str, year: int) -> frozenset[date]:
    """The state's legal holidays in `year` from the `holidays` library."""
    return _library_holidays(state, year)


def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo."""
    return ZoneInfo(name)
