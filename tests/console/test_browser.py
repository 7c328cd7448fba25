"""End to end in headless Chromium: sign in, search, open an event, see its proof, see tampering.

Debian's chromium and chromium-driver are driven by Selenium with both paths given explicitly,
so nothing is downloaded. Screenshots go to $GUARD_TEST_ARTIFACTS (or pytest's tmp dir).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update
from werkzeug.serving import make_server

from guard.audit.models import AuditEvent
from guard.db import transaction
from guard.runtime import Runtime
from tests.conftest import TenantKeys
from tests.console.helpers import add_event, checkpoint

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
         "--disable-dev-shm-usage", "--window-size=1280,1000")


def _require_browser() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if os.environ.get("GUARD_TEST_REQUIRE_BROWSER"):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing but GUARD_TEST_REQUIRE_BROWSER is set "
                    "(apt-get install chromium chromium-driver)")
    pytest.skip("Debian's chromium and chromium-driver are not installed "
                "(apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The real app served by werkzeug on an ephemeral port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where screenshots go: $GUARD_TEST_ARTIFACTS/<test id>, else the test's tmp dir."""
    base = os.environ.get("GUARD_TEST_ARTIFACTS")
    name = request.node.name.replace("[", "-").replace("]", "")
    out = Path(base) / name if base else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium with a fresh profile."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(10)  # element lookups wait for the page instead of racing it
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_auditor_walkthrough_in_chromium(app: Flask, rt: Runtime, tenant: TenantKeys, live_url: str,
                                         browser: Any, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def wait_url(pred: Any) -> str:
        WebDriverWait(browser, 15).until(lambda d: pred(d.current_url))
        return str(browser.current_url)

    # Some history: calls refused for several reasons, a payment with a card number in its note
    # (scrubbed at write), then a signed checkpoint, then one more event after it.
    for reason in ("outside_calling_hours", "dnc_listed", "outside_calling_hours", "daily_cap_reached"):
        add_event(rt, tenant.id, action="tcpa.call.check", outcome="deny", reasons=[reason],
                  details={"state": "FL", "purpose": "collections"})
    add_event(rt, tenant.id, action="pci.charge.create", outcome="allow",
              details={"note": "caller read 4242424242424242", "amount": 1999, "currency": "USD"})
    size = checkpoint(rt, tenant.id)
    add_event(rt, tenant.id, action="tcpa.call.check", outcome="allow")

    def shot(name: str) -> None:
        path = artifacts / f"{name}.png"
        assert browser.save_screenshot(str(path)), name
        assert path.stat().st_size > 5000

    def text() -> str:
        return str(browser.find_element(By.TAG_NAME, "body").text)

    # 1. Not signed in: the console sends the browser to the sign-in page.
    browser.get(f"{live_url}/console/")
    assert browser.current_url == f"{live_url}/console/login"
    shot("01-sign-in")
    browser.find_element(By.ID, "actor").send_keys("Quinn QSA")
    browser.find_element(By.ID, "api_key").send_keys(tenant.keys["auditor"])
    browser.find_element(By.ID, "sign-in").click()

    # 2. Status page: chain verified, checkpoint, denials chart.
    wait_url(lambda u: u == f"{live_url}/console/")
    assert "Verified up to seq" in browser.find_element(By.ID, "chain-ok").text
    assert f"Tree size {size}" in browser.find_element(By.ID, "checkpoint").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#denials-chart rect")) >= 3
    # The stylesheet loaded under the CSP (the header bar is dark, not the default white).
    header_bg = browser.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property("background-color")
    assert header_bg in ("rgba(22, 32, 44, 1)", "rgb(22, 32, 44)")
    cookie = browser.get_cookie("guard_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot("02-status")

    # 3. Search: denied call checks only.
    browser.find_element(By.LINK_TEXT, "Events").click()
    wait_url(lambda u: u.endswith("/console/events"))
    browser.find_element(By.ID, "f-action").send_keys("tcpa.*")
    Select(browser.find_element(By.ID, "f-outcome")).select_by_value("deny")
    browser.find_element(By.ID, "search-go").click()
    wait_url(lambda u: "outcome=deny" in u)
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == 4 and all("DENY" in r.text for r in rows)
    assert "outside_calling_hours" in text()
    shot("03-search")

    # 4. One event: its decision, reasons, policy version and a verified inclusion proof.
    rows[1].find_element(By.CSS_SELECTOR, "a.event-link").click()
    wait_url(lambda u: "/console/events/evt_" in u)
    assert browser.find_element(By.ID, "decision").text == "DENY"
    assert "dnc_listed" in browser.find_element(By.ID, "reasons").text
    proof = browser.find_element(By.ID, "proof-status").text
    assert proof.startswith("✓ Included in checkpoint") and str(size) in proof
    event_url = browser.current_url
    shot("04-event-proof")
    browser.find_element(By.ID, "policy-link").click()
    wait_url(lambda u: "/console/policies/" in u)
    assert "idle_minutes" in text() and "retention_days" in text()
    shot("05-policy")

    # No card number anywhere the auditor can reach.
    browser.get(f"{live_url}/console/events?limit=100")
    assert "4242424242424242" not in browser.page_source
    with transaction(rt.sessions) as s:
        pay = s.execute(select(AuditEvent.id).where(AuditEvent.tenant_id == tenant.id,
                                                    AuditEvent.action == "pci.charge.create")).scalar_one()
    browser.get(f"{live_url}/console/events/{pay}")
    assert re.search(r"caller read \[(redacted|CARD \*+4242)\]", text())
    assert "4242424242424242" not in browser.page_source

    # 5. Someone edits a checkpointed row straight in the database.
    with transaction(rt.sessions) as s:
        target = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == tenant.id)
                           .order_by(AuditEvent.seq).limit(1)).scalar_one()
        bad_seq, bad_id = target.seq, target.id
        s.execute(update(AuditEvent).where(AuditEvent.id == bad_id).values(outcome="allow"))
    browser.get(f"{live_url}/console/events/{bad_id}")
    assert "PROOF FAILS" in browser.find_element(By.ID, "proof-status").text
    shot("06-proof-fails")
    browser.get(event_url)  # its neighbour still proves: only the edited row fails
    assert "Included in checkpoint" in browser.find_element(By.ID, "proof-status").text
    browser.find_element(By.LINK_TEXT, "Status").click()
    wait_url(lambda u: u == f"{live_url}/console/")
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "verify-full")))
    browser.find_element(By.ID, "verify-full").click()
    wait_url(lambda u: u.endswith("full=1"))
    banner = browser.find_element(By.ID, "chain-broken").text
    assert f"CHAIN BROKEN at seq {bad_seq}" in banner
    shot("07-chain-broken")

    # 6. Sign out (a CSRF-protected form post); the console is closed again.
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    wait_url(lambda u: u.startswith(f"{live_url}/console/login"))
    assert "signed out" in browser.find_element(By.ID, "notice").text
    browser.get(f"{live_url}/console/events")
    assert browser.current_url == f"{live_url}/console/login"
    shot("08-signed-out")

    # The browser saw no Content-Security-Policy violation and no script error on any page.
    problems = [e["message"] for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not problems, problems
    with transaction(rt.sessions) as s:
        actions = s.execute(select(AuditEvent.action).where(
            AuditEvent.tenant_id == tenant.id, AuditEvent.actor == "Quinn QSA")).scalars().all()
    assert {"console.login", "console.status.read", "console.events.read", "console.event.read",
            "console.policy.read", "console.logout"} <= set(actions)
