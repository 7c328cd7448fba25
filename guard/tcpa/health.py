"""Readiness report of the outbound domain: holiday data for the states whose rules need it."""

from __future__ import annotations

from typing import Any

from guard.tcpa import geo
from guard.tcpa.policy import OutboundPolicy


def holidays_ready(rt: Any) -> tuple[str, str, bool]:
    """Report states with a holiday rule but no holiday data this year or next.

    Checks to those states are denied `holiday_data_missing` either way (fail closed), so the
    instance stays ready; the report tells the operator to update the `holidays` package.
    """
    policy = rt.policies.base.get("outbound")
    assert isinstance(policy, OutboundPolicy)
    year = rt.clock.now().year
    missing: list[str] = []
    for st, rule in sorted(policy.states.items()):
        if not rule.no_holidays:
            continue
        for y in (year, year + 1):
            try:
                geo.state_holidays(st, y)
            except geo.HolidayDataMissing:
                missing.append(f"{st} {y}")
    return "tcpa_holidays", ("ok" if not missing else "missing: " + ", ".join(missing)), True
