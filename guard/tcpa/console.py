"""The auditor console's Do-Not-Call freshness panel (registered with guard.console.panels)."""

from __future__ import annotations

from guard.console.panels import PanelInput, PanelView, register_panel
from guard.tcpa.policy import OutboundPolicy
from guard.tcpa.service import registry_status


def dnc_freshness(inp: PanelInput) -> PanelView:
    """Each registry list's size and age; missing or stale national data is shown as bad.

    Checks fail closed on the same facts (`registry_stale`), so a red panel here means dialers
    are being refused right now.
    """
    policy = inp.policies.get("outbound")
    assert isinstance(policy, OutboundPolicy)
    limit = policy.registry.national_max_age_days
    lists = registry_status(inp.session, tenant_id=inp.tenant_id, policy=policy, now=inp.now)
    rows = [(str(r["list"]), f"{int(str(r['count'])):,} numbers, {float(str(r['age_days'])):.1f} days old"
             + (" — STALE" if r["stale"] else "")) for r in lists]
    national = next((r for r in lists if r["list"] == "national"), None)
    if national is None:
        return PanelView("bad", "no national Do-Not-Call registry is loaded: every check is refused",
                         rows, note="load one with `guard dnc import --list national FILE`")
    age = float(str(national["age_days"]))
    if national["stale"]:
        return PanelView("bad", f"the national registry is {age:.0f} days old (limit {limit}): "
                         "checks are refused as registry_stale", rows)
    if age > limit * 0.8:
        return PanelView("warn", f"the national registry is {age:.0f} days old; it goes stale at "
                         f"{limit}", rows)
    return PanelView("ok", f"national registry {age:.1f} days old (limit {limit})", rows)


register_panel("dnc_freshness", "Do-Not-Call registry freshness", dnc_freshness, order=20)
