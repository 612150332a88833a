"""Governance from the console: console.yaml edits, refusals, the plan gate, custom apps, manual
indicators; and the pure pieces (chart, cache) without a server."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import httpx

from enforcer.console import governance as gov
from enforcer.console.chart import Series, bar_chart
from enforcer.console.report_cache import ReportCache
from tests.console.conftest import Console
from tests.console.test_access import csrf_of, session_cookie, sign_in

NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def test_set_tag_keeps_comments_and_replaces_the_console_entry(tmp_path: Path) -> None:
    (tmp_path / "console.yaml").write_text(
        "# our note\nversion: 1\napps:\n  - app: slack  # kept\n    tag: sanctioned\n"
    )
    gov.set_tag(tmp_path, "trello", "monitored", actor="console", now=NOW)
    edit = gov.set_tag(tmp_path, "trello", "unsanctioned", actor="console", now=NOW)
    staged = gov.staged_path(tmp_path)
    text = staged.read_text()
    assert "# our note" in text and "# kept" in text
    assert text.count("app: trello") == 1 and "tag: unsanctioned" in text
    assert "trello" not in (tmp_path / "console.yaml").read_text()  # staged, not live
    assert "+    tag: unsanctioned" in edit.patch() and "-    tag: monitored" in edit.patch()
    gov.set_tag(tmp_path, "trello", "", actor="console", now=NOW)
    assert "trello" not in staged.read_text()
    edit.undo()  # back to the file as that edit found it
    assert "tag: monitored" in staged.read_text()
    gov.publish(tmp_path)
    assert "tag: monitored" in (tmp_path / "console.yaml").read_text() and not staged.exists()


def test_a_new_console_file_is_a_valid_policy_file(tmp_path: Path) -> None:
    edit = gov.set_tag(tmp_path, "trello", "unsanctioned", actor="console", now=NOW)
    assert edit.before == ""
    assert gov.check(tmp_path) == []
    assert "apps:\n  - app: trello\n    tag: unsanctioned" in gov.snippet(edit, "trello")
    edit.undo()
    assert not (tmp_path / "console.yaml").exists()


def _signed_in(console: Console, client: httpx.Client) -> tuple[dict[str, str], str]:
    cookie = session_cookie(sign_in(client))
    return cookie, csrf_of(client.get("/console/", headers=cookie).text)


def test_tagging_an_app_tagged_in_another_file_is_refused_and_nothing_is_written(
    console: Console,
) -> None:
    with console.client() as client:
        cookie, csrf = _signed_in(console, client)
        response = client.post(
            "/console/apps/dropbox/tag", headers=cookie, data={"csrf": csrf, "tag": "unsanctioned"}
        )
        assert response.status_code == 409
        assert "file-sharing.yaml" in response.text and "already tagged" in response.text
        # Named the right way round: the console's new entry, already tagged in the git file.
        assert re.search(r"console\.yaml:\d+[^<]*already tagged at policies/file-sharing\.yaml",
                         html.unescape(response.text)), response.text[:3000]  # fmt: skip
        assert not (console.policy_dir / "console.yaml").exists()


def test_apply_refuses_a_plan_that_changed_since_the_preview(console: Console) -> None:
    with console.client() as client:
        cookie, csrf = _signed_in(console, client)
        client.post(
            "/console/apps/trello/tag", headers=cookie, data={"csrf": csrf, "tag": "unsanctioned"}
        )
        page = client.get("/console/governance?app=trello", headers=cookie)
        fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        # Someone changes the policy meanwhile: the previewed plan is no longer the plan.
        client.post(
            "/console/apps/slack/tag", headers=cookie, data={"csrf": csrf, "tag": "unsanctioned"}
        )
        response = client.post(
            "/console/governance/apply",
            headers=cookie,
            data={"csrf": csrf, "fingerprint": fingerprint},
        )
        assert response.status_code == 409 and "changed since you reviewed it" in response.text
        page = client.get("/console/governance", headers=cookie)
        fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        response = client.post(
            "/console/governance/apply",
            headers=cookie,
            data={"csrf": csrf, "fingerprint": fingerprint},
        )
        assert response.status_code == 303 and "applied=" in response.headers["location"]
        done = client.get(response.headers["location"], headers=cookie).text
        assert "No changes" in done
        patch = client.get("/console/governance/patch?app=trello", headers=cookie)
        assert (
            "+  - app: trello" in patch.text
            and "attachment" in patch.headers["content-disposition"]
        )


def test_create_a_custom_app_from_unrecognised_domains(console: Console) -> None:
    with console.client() as client:
        cookie, csrf = _signed_in(console, client)
        data = {"csrf": csrf, "app_id": "acme-intranet", "name": "Acme intranet", "category": "collaboration",
                "domain": ["acme-intranet.example"]}  # fmt: skip
        response = client.post("/console/domains/custom-app", headers=cookie, data=data)
        assert response.status_code == 303, response.text
        text = gov.staged_path(console.policy_dir).read_text()  # staged until Apply
        assert "custom_apps:" in text and "acme-intranet.example" in text
        page = client.get("/console/apps/acme-intranet", headers=cookie)
        assert page.status_code == 200 and "custom app" in page.text
        bad = client.post(
            "/console/domains/custom-app", headers=cookie, data={**data, "app_id": "Bad Id"}
        )
        assert bad.status_code == 422


def test_manual_indicators_are_added_and_removed(console: Console) -> None:
    with console.client() as client:
        cookie, csrf = _signed_in(console, client)
        data = {
            "csrf": csrf,
            "domain": "Files.Example.ORG",
            "action": "Block",
            "severity": "High",
            "scope": "",
        }
        assert client.post("/console/indicators", headers=cookie, data=data).status_code == 303
        again = client.post("/console/indicators", headers=cookie, data=data)
        assert again.headers["location"].endswith("error=duplicate")
        page = client.get("/console/indicators?source=manual", headers=cookie).text
        assert "files.example.org" in page
        ind_id = re.search(r"/console/indicators/(\d+)/delete", page).group(1)  # type: ignore[union-attr]
        client.post(f"/console/indicators/{ind_id}/delete", headers=cookie, data={"csrf": csrf})
        assert (
            "files.example.org"
            not in client.get("/console/indicators?source=manual", headers=cookie).text
        )
        csv = client.get("/console/indicators?format=csv&source=policy", headers=cookie).text
        assert csv.splitlines()[0].startswith("indicatorValue,source,application,action")


def test_bar_chart_is_accessible_svg() -> None:
    svg = bar_chart(
        ["11-24", "11-25"], [Series("Blocked", [3, 25], "bar-blocked")], "Blocked <per day>"
    )
    assert svg.startswith("<svg") and 'role="img"' in svg and "Blocked: 28" in svg
    assert "&lt;per day&gt;" in svg and "<per day>" not in svg
    assert ">32<" in svg  # the axis ends at a round number above the highest bar


def test_report_cache_serves_stale_results_while_refreshing() -> None:
    now = [0.0]
    cache = ReportCache(ttl=10, clock=lambda: now[0])
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("k", compute) == 1
    assert cache.get("k", compute) == 1 and len(calls) == 1
    now[0] = 11
    assert cache.get("k", compute) == 1  # stale, answered at once; refreshed in the background
    for _ in range(100):
        if cache.get("k", compute) == 2:
            break
        import time

        time.sleep(0.01)
    assert cache.get("k", compute) == 2
