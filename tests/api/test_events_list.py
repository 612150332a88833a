"""`GET /api/v1/events`: an admin searches the uploaded events by device, user, process, domain
(with its subdomains), action and time, newest first, paged by cursor; bad filters are 422s
naming the parameter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from enforcer.store import event_search
from enforcer.store.event_search import EventSearch, count_matching, search_events
from tests.api.conftest import Api, bearer, enroll_body
from tests.api.test_events import event

URL = "/api/v1/events"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def at(minutes_ago: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def upload(api: Api, device_id: str, events: list[dict[str, Any]]) -> None:
    token = api.enroll(device_id)
    batch = {"batchId": f"b-{device_id}", "events": events}
    answer = api.client.post(URL, headers=bearer(token), json=batch)
    assert answer.status_code == 200, answer.text


def seed(api: Api) -> None:
    upload(
        api,
        "laptop-1",
        [
            event(time=at(1), domain="www.dropbox.com", processName="firefox", action="allowed"),
            event(time=at(2), domain="dropbox.com", processName="firefox", action="blocked"),
            event(time=at(3), domain="notdropbox.com", processName="curl", action="allowed"),
            event(time=at(4), domain="dropbox.com.evil.example", action="allowed"),
            event(time=at(60 * 30), domain="dl.dropbox.com", user="bob", action="warned"),
            event(
                time=at(5),
                domain="example.org",
                processName="curl",
                processPath="/usr/bin/curl",
                action="audited",
            ),
        ],
    )
    upload(
        api,
        "laptop-2",
        [
            event(time=at(0.5), domain="api.dropbox.com", hostname="laptop-2.corp.example"),
            event(time=at(10), domain="example.org", user="bob", action="allowed"),
        ],
    )


def get(api: Api, **params: Any) -> dict[str, Any]:
    answer = api.client.get(URL, headers=api.admin, params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def domains(body: dict[str, Any]) -> list[str]:
    return [e["domain"] for e in body["value"]]


def test_a_domain_matches_itself_and_its_subdomains_newest_first(api: Api) -> None:
    seed(api)
    body = get(api, domain="Dropbox.com")
    assert domains(body) == [
        "api.dropbox.com",
        "www.dropbox.com",
        "dropbox.com",
        "dl.dropbox.com",
    ]
    assert "nextCursor" not in body
    assert get(api, domain="www.dropbox.com")["value"][0]["deviceId"] == "laptop-1"


def test_filters_by_device_user_process_action_and_time(api: Api) -> None:
    seed(api)
    assert len(get(api, device="LAPTOP-2.corp.example")["value"]) == 2  # hostname, any case
    assert len(get(api, device="laptop-1")["value"]) == 6  # device id
    assert get(api, device="nobody.corp.example")["value"] == []
    assert domains(get(api, user="bob")) == ["example.org", "dl.dropbox.com"]
    assert domains(get(api, process="curl")) == ["notdropbox.com", "example.org"]
    assert domains(get(api, process="/usr/bin/curl")) == ["example.org"]
    assert domains(get(api, action="blocked")) == ["api.dropbox.com", "dropbox.com"]
    assert domains(get(api, domain="dropbox.com", since="24h")) == [
        "api.dropbox.com",
        "www.dropbox.com",
        "dropbox.com",
    ]
    assert domains(get(api, domain="dropbox.com", until="24h")) == ["dl.dropbox.com"]
    assert domains(get(api, device="laptop-1", since=at(2.5), until=at(1.5))) == ["dropbox.com"]
    found = get(api, domain="dropbox.com", device="laptop-2", count="true")
    assert found["total"] == 1
    assert found["value"][0]["hostname"] == "laptop-2.corp.example"


def test_pages_by_cursor_show_every_event_once_even_when_times_tie(api: Api) -> None:
    same = at(7)
    upload(api, "laptop-3", [event(i, time=same) for i in range(5)] + [event(9, time=at(1))])
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        body = get(api, limit=2, cursor=cursor, count="true") if cursor else get(api, limit=2)
        seen += [e["id"] for e in body["value"]]
        pages += 1
        cursor = body.get("nextCursor", "")
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 6
    everything = get(api, limit=1000)["value"]
    assert seen == [e["id"] for e in everything]
    assert everything[0]["domain"] == "site9.example"


def test_a_domains_many_names_page_newest_first_listed_or_as_a_range(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 7 names, one event a minute for 40 minutes then one 3 days old: the time window the
    # search reads grows from a minute until it holds a page, and reaches the old event.
    events = [event(time=at(i), domain=f"h{i % 7}.big.example") for i in range(40)]
    events += [event(time=at(60 * 72), domain="big.example"), event(domain="big.example.org")]
    upload(api, "laptop-4", events)
    search = EventSearch(domain="big.example")
    with api.engine.connect() as conn:
        pages = [search_events(conn, search, limit=15)]
        while pages[-1].more:
            pages.append(search_events(conn, search, limit=15, before=pages[-1].last))
        monkeypatch.setattr(event_search, "MERGE_NAMES_MAX", 3)  # a range of the index
        assert search_events(conn, search, limit=15) == pages[0]
        assert count_matching(conn, search) == 41
    found = [f.event for page in pages for f in page.events]
    assert [len(page.events) for page in pages] == [15, 15, 11]
    assert [e.domain for e in found] == [f"h{i % 7}.big.example" for i in range(40)] + [
        "big.example"
    ]


def test_a_hostname_of_two_devices_pages_both(api: Api) -> None:
    same = {"hostname": "shared.corp.example"}
    for device in ("old-id", "new-id"):
        token = api.client.post("/api/v1/enroll", json={**enroll_body(device), **same}).json()[
            "deviceToken"
        ]
        batch = {"batchId": device, "events": [event(i, time=at(i)) for i in range(3)]}
        assert api.client.post(URL, headers=bearer(token), json=batch).status_code == 200
    first = get(api, device="shared.corp.example", limit=4)
    rest = get(api, device="shared.corp.example", limit=4, cursor=first["nextCursor"])
    assert [e["deviceId"] for e in first["value"] + rest["value"]].count("old-id") == 3
    assert len(first["value"] + rest["value"]) == 6 and "nextCursor" not in rest


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "query.since"),
        ({"until": "2026-13-01"}, "query.until"),
        ({"action": "deny"}, "query.action"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"limit": 0}, "query.limit"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(api: Api, params: dict[str, Any], field: str) -> None:
    answer = api.client.get(URL, headers=api.admin, params=params)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == field


def test_only_an_admin_reads_events(api: Api) -> None:
    token = api.enroll("laptop-5")
    assert api.client.get(URL).status_code == 401
    assert api.client.get(URL, headers=bearer(token)).status_code == 403
