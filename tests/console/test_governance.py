"""Governance from the console: console.yaml edits, refusals, the plan gate, custom apps, manual
indicators; and the pure pieces (chart, cache) without a server."""

from __future__ import annotations

import datetime as dt
import html
import re
import subprocess
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


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_tagging_an_app_tagged_in_git_offers_the_patch_and_a_branch(console: Console) -> None:
    pol = console.policy_dir
    _git(pol, "init", "-q", "-b", "main")
    _git(pol, "add", ".")
    _git(pol, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "policies")
    with console.client() as client:
        cookie, csrf = _signed_in(console, client)
        form = {"csrf": csrf, "tag": "in-review", "owner": "ann", "due": "2026-12-31",
                "note": "DPA check"}  # fmt: skip
        response = client.post("/console/apps/mega/tag", headers=cookie, data=form)
        # No 409: the change is offered as a patch of the git file that tags the app.
        assert response.status_code == 200
        page = html.unescape(response.text)
        assert "<code>policies/file-sharing.yaml:18</code> already tags" in page
        assert "-    tag: unsanctioned\n" in page and "+    tag: in-review\n" in page
        assert "+      owner: ann\n+      due: 2026-12-31\n+      note: DPA check\n" in page
        assert not (pol / "console.yaml").exists() and not gov.staged_path(pol).exists()
        query = re.search(r'href="(/console/governance/git-patch\?[^"]+)"', response.text)
        assert query is not None
        patch = client.get(html.unescape(query.group(1)), headers=cookie)
        assert patch.status_code == 200 and "attachment" in patch.headers["content-disposition"]
        assert patch.text.startswith("--- a/file-sharing.yaml\n+++ b/file-sharing.yaml\n")
        branch = client.post("/console/governance/git-branch", headers=cookie,
                             data={**form, "app": "mega"})  # fmt: skip
        assert branch.status_code == 200, branch.text[:2000]
        name = re.search(r"new branch <code>(enforcer/mega-in-review-[0-9-]+)</code>", branch.text)
        assert name is not None
        committed = _git(pol, "show", f"{name.group(1)}:file-sharing.yaml")
        assert "tag: in-review" in committed and "owner: ann" in committed
        assert _git(pol, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
        assert _git(pol, "status", "--porcelain") == ""
        # A change that would not load (in review without an owner) is neither offered nor
        # committed: the errors are named at the git file's line.
        for url, data in (
            ("/console/apps/mega/tag", {**form, "owner": ""}),
            ("/console/governance/git-branch", {**form, "owner": "", "app": "mega"}),
        ):
            refused = client.post(url, headers=cookie, data=data)
            assert refused.status_code == 409
            assert "policies/file-sharing.yaml:" in refused.text and "review.owner" in refused.text
        assert len(_git(pol, "branch", "--list").split()) == 3  # main and the one branch


def test_the_governance_page_shows_the_review_workflow_and_schedules(console: Console) -> None:
    with console.client() as client:
        cookie, csrf = _signed_in(console, client)
        page = html.unescape(client.get("/console/governance", headers=cookie).text)
        review = page[page.index('id="in-review"') : page.index('id="custom-tags"')]
        # The example policy puts dropbox in review (owner, due, note; monitored meanwhile).
        assert "it-security@example.com" in review and "2027-03-31" in review
        assert "policies/file-sharing.yaml:" in review
        tags = page[page.index('id="custom-tags"') : page.index('id="schedules"')]
        assert "approved-for-finance" in tags and ">box<" in tags
        schedules = page[page.index('id="schedules"') :]
        assert "work-hours" in schedules and "Europe/Berlin" in schedules
        queue = page[page.index('id="review-queue"') : page.index('id="in-review"')]
        assert "Trello" in queue  # discovered, and no policy entry tags it
        assert "Dropbox" not in queue and "WeTransfer" not in queue  # in review / tagged
        # An in-review tag chosen in the console goes to console.yaml with its review.
        form = {"csrf": csrf, "tag": "in-review", "owner": "kim", "due": "2026-12-31"}
        response = client.post("/console/apps/trello/tag", headers=cookie, data=form)
        assert response.status_code == 303, response.text[:2000]
        staged = gov.staged_path(console.policy_dir).read_text()
        assert "tag: in-review" in staged and "owner: kim" in staged
        bad = client.post(
            "/console/apps/slack/tag", headers=cookie, data={**form, "due": "tomorrow"}
        )
        assert bad.status_code == 409
        assert "is not a date written YYYY-MM-DD" in html.unescape(bad.text)
        everything = client.get("/console/apps?days=30", headers=cookie).text
        only_box = client.get(
            "/console/apps?custom_tag=approved-for-finance&days=30", headers=cookie
        )
        assert "Trello" in everything and "Trello" not in only_box.text  # box was not discovered
        assert 'name="custom_tag" value="approved-for-finance"' in only_box.text
        dropbox = html.unescape(client.get("/console/apps/dropbox", headers=cookie).text)
        assert "In review: it-security@example.com, due 2027-03-31" in dropbox
        box = client.get("/console/apps/box", headers=cookie).text
        assert 'href="/console/apps?custom_tag=approved-for-finance"' in box


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
