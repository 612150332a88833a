"""Sync: snapshot, delta, ETag, long-poll, group isolation, and the size of a one-domain delta."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from sqlalchemy import update

from enforcer.models import Action, Indicator
from enforcer.store.manual import add_manual, delete_manual
from enforcer.store.tables.indicators import StoreMetaRow
from tests.api.conftest import Api, bearer
from tests.api.helpers import apply_indicators, block

SYNC = "/api/v1/sync"


def values(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(u["scope"], u["indicatorValue"]) for u in body["upserts"]}


def test_snapshot_then_delta_after_a_change(api: Api) -> None:
    rev = apply_indicators(api.engine, [block("a.example", app="megashare"), block("b.example")])
    token = api.enroll("laptop-1")
    snap = api.client.get(SYNC, headers=bearer(token))
    assert snap.status_code == 200
    body = snap.json()
    assert body["snapshot"] is True and body["revision"] == rev and body["removes"] == []
    assert values(body) == {("", "a.example"), ("", "b.example")}
    entry = next(u for u in body["upserts"] if u["indicatorValue"] == "a.example")
    assert entry == {
        "indicatorValue": "a.example",
        "action": "Block",
        "severity": "Medium",
        "scope": "",
        "application": "megashare",
        "generateAlert": False,
        "title": "Block a.example",
    }

    rev2 = apply_indicators(api.engine, [block("a.example", app="megashare"), block("c.example")])
    delta = api.client.get(SYNC, params={"since": rev}, headers=bearer(token)).json()
    assert delta["snapshot"] is False and delta["revision"] == rev2
    assert values(delta) == {("", "c.example")}
    assert delta["upserts"][0]["title"] == "Block c.example"
    assert delta["removes"] == [{"indicatorValue": "b.example", "scope": ""}]

    same = api.client.get(SYNC, params={"since": rev2}, headers=bearer(token)).json()
    assert same == {
        "revision": rev2,
        "epoch": delta["epoch"],
        "snapshot": False,
        "upserts": [],
        "removes": [],
    }


def test_a_device_only_gets_its_groups(api: Api) -> None:
    rev = apply_indicators(
        api.engine,
        [block("all.example"), block("eng.example", "eng"), block("sales.example", "sales")],
    )
    eng = api.enroll("eng-laptop", ["eng"])
    sales = api.enroll("sales-laptop", ["sales"])
    nobody = api.enroll("kiosk")
    got = {
        name: values(api.client.get(SYNC, headers=bearer(tok)).json())
        for name, tok in (("eng", eng), ("sales", sales), ("none", nobody))
    }
    assert got["eng"] == {("", "all.example"), ("eng", "eng.example")}
    assert got["sales"] == {("", "all.example"), ("sales", "sales.example")}
    assert got["none"] == {("", "all.example")}

    add_manual(api.engine, block("secret.example", "sales"), actor="test")
    add_manual(api.engine, block("mine.example", "eng"), actor="test")
    delta = api.client.get(SYNC, params={"since": rev}, headers=bearer(eng)).json()
    assert values(delta) == {("eng", "mine.example")} and delta["removes"] == []
    assert "secret.example" not in json.dumps(delta)
    # Same revision, other groups: another set, so another ETag.
    tags = {api.client.get(SYNC, headers=bearer(t)).headers["ETag"] for t in (eng, sales, nobody)}
    assert len(tags) == 3


def test_policy_and_manual_entries_for_one_key_merge(api: Api) -> None:
    rev = apply_indicators(api.engine, [Indicator("x.example", Action.WARN, title="policy")])
    manual_id, _ = add_manual(
        api.engine, Indicator("x.example", Action.BLOCK, title="manual"), actor="test"
    )
    token = api.enroll("laptop-1")
    snap = api.client.get(SYNC, headers=bearer(token)).json()
    assert [(u["action"], u["title"]) for u in snap["upserts"]] == [("Block", "manual")]
    rev2 = delete_manual(api.engine, manual_id, actor="test")
    delta = api.client.get(SYNC, params={"since": rev}, headers=bearer(token)).json()
    # The manual row went away but the policy one remains: an upsert, not a remove.
    assert delta["revision"] == rev2 and delta["removes"] == []
    assert [(u["action"], u["title"]) for u in delta["upserts"]] == [("Warn", "policy")]


def test_titles_with_any_text_survive_snapshot_and_delta(api: Api) -> None:
    rev = apply_indicators(api.engine, [block("a.example")])
    title = 'Say "no" \\ to r\u00e9sum\u00e9 sites\n\u2603'
    add_manual(api.engine, Indicator("b.example", Action.AUDIT, title=title), actor="test")
    token = api.enroll("laptop-1")
    snap = api.client.get(SYNC, headers=bearer(token)).json()
    delta = api.client.get(SYNC, params={"since": rev}, headers=bearer(token)).json()
    for body in (snap, delta):
        entry = next(u for u in body["upserts"] if u["indicatorValue"] == "b.example")
        assert entry["title"] == title and entry["action"] == "Audit"


def test_etag_and_if_none_match(api: Api) -> None:
    rev = apply_indicators(api.engine, [block("a.example")])
    token = api.enroll("laptop-1", ["eng"])
    first = api.client.get(SYNC, headers=bearer(token))
    tag = first.headers["ETag"]
    assert tag.startswith(f'"{rev}-') and tag.endswith('"')
    again = api.client.get(SYNC, headers={**bearer(token), "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == tag
    add_manual(api.engine, block("b.example"), actor="test")
    changed = api.client.get(
        SYNC, params={"since": rev}, headers={**bearer(token), "If-None-Match": tag}
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != tag


def test_since_too_old_or_ahead_gets_a_snapshot(api: Api) -> None:
    apply_indicators(api.engine, [block("a.example")])
    add_manual(api.engine, block("b.example"), actor="test")
    rev = add_manual(api.engine, block("c.example"), actor="test")[1]
    token = api.enroll("laptop-1")
    delta = api.client.get(SYNC, params={"since": rev - 1}, headers=bearer(token)).json()
    assert delta["snapshot"] is False and values(delta) == {("", "c.example")}
    # The change log was compacted up to `rev`: a device at rev - 1 must start over.
    meta = StoreMetaRow.__table__  # type: ignore[attr-defined]
    with api.engine.begin() as conn:
        conn.execute(update(meta).where(meta.c.key == "log_floor").values(value=str(rev)))
    old = api.client.get(SYNC, params={"since": rev - 1}, headers=bearer(token)).json()
    assert old["snapshot"] is True and len(old["upserts"]) == 3
    ahead = api.client.get(SYNC, params={"since": rev + 5}, headers=bearer(token)).json()
    assert ahead["snapshot"] is True and ahead["revision"] == rev


def test_long_poll_is_woken_by_a_change(api: Api) -> None:
    rev = apply_indicators(api.engine, [block("a.example")])
    token = api.enroll("laptop-1")
    changed_at: list[float] = []

    def change() -> None:
        time.sleep(0.5)
        add_manual(api.engine, block("late.example"), actor="other-writer")
        changed_at.append(time.monotonic())

    writer = threading.Thread(target=change)
    writer.start()
    response = api.client.get(SYNC, params={"since": rev, "wait": 20}, headers=bearer(token))
    answered = time.monotonic()
    writer.join()
    assert response.status_code == 200
    assert values(response.json()) == {("", "late.example")}
    assert answered - changed_at[0] < 1.5


def test_long_poll_without_change_times_out_with_304(api: Api) -> None:
    rev = apply_indicators(api.engine, [block("a.example")])
    token = api.enroll("laptop-1")
    start = time.monotonic()
    response = api.client.get(SYNC, params={"since": rev, "wait": 0.6}, headers=bearer(token))
    elapsed = time.monotonic() - start
    assert response.status_code == 304 and 0.5 <= elapsed < 3
    assert response.headers["ETag"].startswith(f'"{rev}-')


def test_an_empty_store_can_be_waited_on(api: Api) -> None:
    token = api.enroll("laptop-1")
    start = time.monotonic()
    idle = api.client.get(SYNC, params={"since": 0, "wait": 0.5}, headers=bearer(token))
    assert idle.status_code == 304 and time.monotonic() - start >= 0.4

    def change() -> None:
        time.sleep(0.3)
        add_manual(api.engine, block("first.example"), actor="test")

    writer = threading.Thread(target=change)
    writer.start()
    woken = api.client.get(SYNC, params={"since": 0, "wait": 20}, headers=bearer(token))
    writer.join()
    assert woken.status_code == 200
    body = woken.json()
    assert body["snapshot"] is True and values(body) == {("", "first.example")}


def test_many_waiting_devices_do_not_hold_threads(api: Api) -> None:
    rev = apply_indicators(api.engine, [block("a.example")])
    token = api.enroll("laptop-1")
    results: list[tuple[int, float]] = []
    # More waiters than the server's worker-thread pool (40): they must all be served.
    waiters = 60
    pool = httpx.Limits(max_connections=waiters + 5)
    with httpx.Client(base_url=api.url, timeout=30, limits=pool) as client:

        def poll() -> None:
            r = client.get(SYNC, params={"since": rev, "wait": 20}, headers=bearer(token))
            results.append((r.status_code, time.monotonic()))

        threads = [threading.Thread(target=poll) for _ in range(waiters)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert client.get("/healthz").status_code == 200  # still responsive
        assert not results  # all still waiting
        add_manual(api.engine, block("wake.example"), actor="test")
        changed = time.monotonic()
        for t in threads:
            t.join(timeout=10)
    assert [code for code, _ in results] == [200] * waiters
    assert max(at for _, at in results) - changed < 1.5


def test_one_domain_delta_over_a_large_store_is_small(api: Api) -> None:
    rev = apply_indicators(
        api.engine, [block(f"host{i:05d}.example", app="bulk") for i in range(20_000)]
    )
    token = api.enroll("laptop-1")
    snap = api.client.get(SYNC, headers=bearer(token))
    # Rendered once, compressed, and sent with its length (a cut answer is an error).
    assert snap.headers["content-encoding"] == "gzip"
    assert int(snap.headers["content-length"]) < len(snap.content) / 5
    assert len(snap.json()["upserts"]) == 20_000
    add_manual(api.engine, block("one-more.example"), actor="test")
    delta = api.client.get(SYNC, params={"since": rev}, headers=bearer(token))
    assert len(delta.content) < 1000
    assert values(delta.json()) == {("", "one-more.example")}


def test_sync_parameters_are_checked(api: Api) -> None:
    token = api.enroll("laptop-1")
    for params in ({"wait": 61}, {"wait": -1}, {"since": -1}, {"since": "x"}):
        response = api.client.get(SYNC, params=params, headers=bearer(token))
        assert response.status_code == 422, params
        assert response.json()["detail"].startswith("query.")
