"""The console at a laptop's 1366 by 768: no table is wider than the card that holds it, so no
column (traffic, tag badges, last seen) is cut off or hidden behind a scroll bar."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from enforcer.catalog import load_catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.discovery.sample import requests
from enforcer.store.rollups import merge_rollup
from tests.console.conftest import ADMIN, Console
from tests.console.test_browser import ARGS, CHROMIUM, SHOTS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
)

PAGES = [
    "/console/?days=30", "/console/apps?days=30", "/console/machines?days=30",
    "/console/users?days=30", "/console/domains?days=30", "/console/alerts",
    "/console/indicators", "/console/apps/dropbox?days=30", "/console/machines/pc-01?days=30",
    "/console/machines/pc-01?days=30&tab=apps",
    "/console/machines/pc-01?days=30&tab=timeline", "/console/machines/CONTOSO-LT040?days=30",
    "/console/users/alice.smith?days=30", "/console/apps/microsoft-teams?days=30", "/console/users/alice?days=30",
    "/console/governance",
]  # fmt: skip

OVERFLOWS = """() => {
  const out = [];
  for (const table of document.querySelectorAll('main table')) {
    const box = table.closest('.card, .table-wrap') || table.parentElement;
    const t = table.getBoundingClientRect(), b = box.getBoundingClientRect();
    const hidden = box.scrollWidth - box.clientWidth;
    if (t.right > b.right + 1 || hidden > 1) {
      const caption = table.querySelector('caption, th');
      out.push({table: caption ? caption.textContent.trim() : '?', over: Math.round(Math.max(t.right - b.right, hidden))});
    }
  }
  return out;
}"""


def add_sample_month(console: Console) -> None:
    """What the README's walkthrough uploads: a month of 50 devices (long app names, big byte
    counts, every tag), on top of the fixture's own machines."""
    now = dt.datetime.now(dt.UTC)
    catalog = load_catalog()
    agg = Aggregator(Attributor(catalog))
    agg.add_all(
        Record(
            time=r.time,
            host=r.host,
            src_ip=r.device.ip,
            user=r.device.user,
            device=r.device.hostname if r.device.remote else "",
            bytes_up=r.up,
            bytes_down=r.down,
            action="blocked" if r.denied else "allowed",
        )
        for r in requests(catalog, days=30, device_count=50, now=now)
    )
    merge_rollup(console.engine, agg.rollup())


@pytest.fixture
def page(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    add_sample_month(console)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(base_url=console.url, viewport={"width": 1366, "height": 768})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.goto("/console/login")
        page.get_by_label("Admin token").fill(ADMIN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/")
        yield page
        context.close()
        browser.close()


def test_no_table_overflows_its_card_at_1366_by_768(page: Any) -> None:
    found = {}
    for path in PAGES:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        over = page.evaluate(OVERFLOWS)
        if over:
            found[path] = over
            page.screenshot(path=str(SHOTS / f"overflow-{len(found)}.png"), full_page=True)
    assert found == {}
