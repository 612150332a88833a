"""The console in a real browser: Debian's Chromium, headless, driven by Playwright.

One walk through what an admin does every day, with a screenshot of each main page saved to
test-artifacts/console/ for review (not committed).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.console import governance as gov
from tests.console.conftest import ADMIN, ROOT, Console

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "console"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
)


@pytest.fixture
def page(console: Console) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(
            base_url=console.url, viewport={"width": 1360, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        yield page
        context.close()
        browser.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, token: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_an_admin_day_in_the_console(page, console: Console) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    # Every page sends a visitor without a session to the login form; a wrong token is refused.
    page.goto("/console/machines")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    sign_in(page, "not-the-admin-token-at-all")
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    shot(page, "login")
    sign_in(page, ADMIN)
    expect(page).to_have_url(re.compile(r"/console/machines$"))

    # Dashboard: totals, top apps and the chart of blocked attempts.
    nav = page.get_by_role("navigation", name="Sections")
    nav.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Cloud Discovery")).to_be_visible()
    expect(page.locator(".kpis")).to_contain_text("9 devices")
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "dashboard")

    # Find an app and open its page: domains, risk explanation, users and devices.
    nav.get_by_role("link", name="Discovered apps").click()
    page.get_by_label("Search").fill("trel")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    shot(page, "apps")
    page.get_by_role("link", name="Trello").click()
    expect(page.get_by_role("heading", name="Domains")).to_be_visible()
    expect(page.locator("main")).to_contain_text("trello.com")
    expect(page.locator(".chips").first).to_contain_text("alice")
    shot(page, "app")

    # A machine and each of its tabs; from the machine to its user and back to their machines.
    nav.get_by_role("link", name="Machines").click()
    shot(page, "machines")
    page.get_by_role("link", name="pc-01", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("^pc-01"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("Risk:")
    shot(page, "machine-overview")
    tabs = page.get_by_role("navigation", name="Machine sections")
    tabs.get_by_role("link", name="Discovered apps").click()
    expect(page.locator("tbody")).to_contain_text("Trello")
    shot(page, "machine-apps")
    tabs.get_by_role("link", name="IP address history").click()
    expect(page.locator("tbody")).to_contain_text("10.0.1.")
    shot(page, "machine-ips")
    tabs.get_by_role("link", name="User history").click()
    expect(page.locator("tbody")).to_contain_text("bob")
    shot(page, "machine-users")
    page.locator("tbody").get_by_role("link", name="bob").click()
    expect(page.get_by_role("heading", name="bob")).to_be_visible()
    machines = page.get_by_role("list", name="Machines used by bob")
    expect(machines).to_contain_text("pc-01")
    shot(page, "user")
    machines.get_by_role("link", name="pc-01").click()
    expect(page.get_by_role("heading", name=re.compile("^pc-01"))).to_be_visible()

    # Governance: tag Trello unsanctioned; the plan and its impact show before anything applies.
    page.goto("/console/apps/trello")
    page.get_by_label("Unsanctioned").check()
    page.get_by_role("button", name=re.compile("preview the plan")).click()
    expect(page).to_have_url(re.compile(r"/console/governance\?app=trello"))
    expect(page.locator(".summary")).to_contain_text("to add")
    expect(page.locator(".impact")).to_contain_text("in the last 7 days this would have affected")
    # Staged where the daemon does not look: nothing is applied before the admin confirms.
    assert "app: trello" in gov.staged_path(console.policy_dir).read_text()
    assert not (console.policy_dir / "console.yaml").exists()
    shot(page, "governance")
    page.get_by_role("button", name="Apply this plan").click()
    expect(page.get_by_role("status")).to_contain_text("Applied")
    assert "app: trello" in (console.policy_dir / "console.yaml").read_text()
    page.goto("/console/indicators?q=trello.com")
    expect(page.locator("tbody")).to_contain_text("Block")
    shot(page, "indicators")

    # Export the discovered apps as CSV and check its rows.
    page.goto("/console/apps?days=7")
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    by_app = {r["app"]: r for r in rows}
    assert by_app["trello"]["tag"] == "unsanctioned"
    assert by_app["trello"]["category"] == "collaboration"
    assert int(by_app["trello"]["transactions"]) > 0

    # The other pages render, then sign out: the session is gone.
    for name, title in (
        ("users", "Users"),
        ("domains", "Unrecognised domains"),
        ("alerts", "Alerts"),
    ):
        page.goto(f"/console/{name}")
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        shot(page, name)
    page.get_by_role("button", name="Acknowledge").first.click()
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(1)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.goto("/console/apps")
    expect(page).to_have_url(re.compile(r"/console/login"))


def test_reading_works_without_javascript_and_by_keyboard(console: Console) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(base_url=console.url, java_script_enabled=False)
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.goto("/console/login")
        # Keyboard only: the token field has focus, Enter signs in.
        expect(page.get_by_label("Admin token")).to_be_focused()
        page.keyboard.type(ADMIN)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Cloud Discovery")).to_be_visible()
        # The skip link is the first stop of the tab order, then the navigation.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        expect(
            page.get_by_role("navigation", name="Sections").get_by_role("link", name="Dashboard")
        ).to_be_focused()
        # Without JavaScript the time range still applies through its button.
        page.get_by_label("Time range").select_option("7")
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(re.compile(r"days=7"))
        page.goto("/console/machines/pc-02?tab=apps")
        expect(page.locator("tbody tr").first).to_be_visible()
        page.goto("/console/apps?sort=name")
        expect(page.locator("tbody tr").first).to_contain_text("ChatGPT")
        context.close()
        browser.close()
