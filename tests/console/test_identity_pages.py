"""The console's machines are found by hostname, address or user and show their addresses; a
user's page lists the forms of their name; the apps table has an IPs column, says what the
risk scale means, and shows DNS-only traffic as queries, not 0 B."""

from __future__ import annotations

import csv
import datetime as dt
import io

from enforcer.catalog import load_catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup
from tests.console.conftest import Console
from tests.console.test_access import session_cookie, sign_in


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_machines_are_searched_by_address_and_user_and_list_their_addresses(
    console: Console,
) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))

        def found(q: str) -> dict[str, dict[str, str]]:
            page = client.get("/console/machines", params={"q": q, "format": "csv"}, headers=cookie)
            return {r["device"]: r for r in _csv(page.text)}

        by_ip = found("10.0.3.")
        assert list(by_ip) == ["pc-03"]
        assert set(by_ip["pc-03"]["ips"].split(", ")) == {"10.0.3.1", "10.0.3.2"}
        assert "lab/pc 9" in found("CORP\\erin"), "the user's raw form finds her machine"
        assert "pc-03" in found("dave") and "pc-00" not in found("dave")
        html = client.get("/console/machines", params={"q": "10.0.3.1"}, headers=cookie).text
        assert "IP addresses" in html and "Hostname, IP address or user" in html


def test_the_apps_table_has_ips_the_risk_scale_and_dns_queries(console: Console) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    aggregator = Aggregator(Attributor(load_catalog()))
    aggregator.add_all(
        Record(time=now - 60, host="zoom.us", src_ip="10.0.5.1", user="bob", device="pc-05")
        for _ in range(7)
    )  # DNS answers: no byte counts
    merge_rollup(console.engine, aggregator.rollup())
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        # 7 days: the start-up warm-up cached the default range before this data came.
        csv_page = client.get("/console/apps?format=csv&days=7", headers=cookie)
        rows = {r["app"]: r for r in _csv(csv_page.text)}
        html = client.get("/console/apps", params={"q": "zoom", "days": 7}, headers=cookie).text
    assert rows["zoom"]["ips"] == "1" and int(rows["dropbox"]["ips"]) >= 2
    assert ">IPs<" in html or ">IPs " in html
    assert "0 (lowest risk) to 10 (highest)" in html
    assert "7 queries" in html and "0 B" not in html


def test_a_users_page_lists_the_forms_of_their_name(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get("/console/users/erin", headers=cookie)
    assert page.status_code == 200
    assert "Names seen" in page.text and "CORP\\erin" in page.text


def test_the_users_list_finds_a_user_by_a_raw_form_of_the_name(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get(
            "/console/users", params={"q": "CORP\\erin", "format": "csv"}, headers=cookie
        )
    assert [r["user"] for r in _csv(page.text)] == ["erin"]
