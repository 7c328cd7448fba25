"""The console's Do-Not-Call freshness panel follows the registry's age, failing closed."""

from __future__ import annotations

from typing import Any

import pytest

from guard.console.panels import PanelInput, load_panels
from guard.db import transaction
from guard.tcpa.console import dnc_freshness

pytestmark = pytest.mark.integration


def _panel(env: Any) -> Any:
    with transaction(env.rt.sessions) as s:
        return dnc_freshness(PanelInput(session=s, tenant_id=env.tenant.id,
                                        policies=env.rt.policies_for(s, env.tenant.id),
                                        now=env.clock.now()))


def test_panel_is_registered() -> None:
    assert "dnc_freshness" in {p.name for p in load_panels()}


def test_fresh_warn_stale(env: Any) -> None:
    view = _panel(env)
    assert view.level == "ok" and ("national" in dict(view.rows))
    env.clock.advance(days=26)
    assert _panel(env).level == "warn"
    env.clock.advance(days=6)
    stale = _panel(env)
    assert stale.level == "bad" and "registry_stale" in stale.headline
    assert "STALE" in dict(stale.rows)["national"]


def test_status_page_shows_the_panel(env: Any) -> None:
    from tests.console.helpers import sign_in

    sign_in(env.client, env.tenant.keys["auditor"])
    page = env.client.get("/console/")
    if page.status_code in (301, 302, 308):
        page = env.client.get(page.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html[:300]
    assert "Do-Not-Call registry freshness" in html and "national registry" in html
