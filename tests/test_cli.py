"""The `enforcer` command as a user runs it: plan -> apply -> explain -> change -> plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_policy

REPO = Path(__file__).resolve().parent.parent


def run(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer", *args],
        env={**os.environ, **env}, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    return {"ENFORCER_DATABASE_URL": db_url}


def test_walkthrough_with_the_example_policies(tmp_path: Path, env: dict[str, str]) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for path in (REPO / "policies").glob("*.yaml"):
        (policies / path.name).write_text(path.read_text())

    first = run(["plan", "--detailed-exitcode"], env, tmp_path)
    assert first.returncode == 2, first.stderr
    assert (
        "+ mega.nz" in first.stdout
        and "# mega: unsanctioned by apps entry (policies/file-sharing.yaml:" in first.stdout
    )
    assert first.stdout.rstrip().splitlines()[-1].startswith("Plan: ")

    refused = run(["apply"], env, tmp_path, stdin="y\n")  # a pipe is nobody confirming
    assert refused.returncode == 1 and "enforcer apply --yes" in refused.stderr

    applied = run(["apply", "--yes"], env, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "Applied. The store is at revision 1." in applied.stdout

    again = run(["plan", "--detailed-exitcode"], env, tmp_path)
    assert again.returncode == 0 and "No changes." in again.stdout

    explained = run(["explain", "www.MEGA.nz.", "--json"], env, tmp_path)
    report = json.loads(explained.stdout)
    assert report["blocked"] and report["indicator"] == "mega.nz"
    assert report["policy"]["origin"].startswith("policies/file-sharing.yaml:")
    assert report["apps"][0]["id"] == "mega"
    human = run(["explain", "www.mega.nz"], env, tmp_path).stdout
    assert human.startswith("www.mega.nz: BLOCKED by indicator mega.nz")

    ngrok = json.loads(
        run(["explain", "ngrok.com", "--group", "engineering", "--json"], env, tmp_path).stdout
    )
    assert ngrok["action"] == "Audit"  # the group's own entry beats the all-devices block
    assert (
        json.loads(run(["explain", "ngrok.com", "--json"], env, tmp_path).stdout)["action"]
        == "Block"
    )

    # Change a policy: unblock mega, then plan shows exactly that diff.
    text = (policies / "file-sharing.yaml").read_text()
    (policies / "file-sharing.yaml").write_text(
        text.replace("  - app: mega\n    tag: unsanctioned", "  - app: mega\n    tag: sanctioned")
    )
    diff = run(["plan", "--json"], env, tmp_path)
    data = json.loads(diff.stdout)
    assert {c["indicatorValue"] for c in data["changes"]} == {
        "mega.nz",
        "mega.io",
        "mega.co.nz",
        "mega.app",
    }
    assert {c["action"] for c in data["changes"]} == {"-"}
    assert data["summary"] == {"create": 0, "update": 0, "delete": 4}


def test_saved_plan_apply_and_stale_refusal(tmp_path: Path, env: dict[str, str]) -> None:
    policies = tmp_path / "policies"
    write_policy(policies, "a.yaml", "apps:\n  - {app: pastebin, tag: unsanctioned}\n")
    assert run(["plan", "--out", "p1.json"], env, tmp_path).returncode == 0
    assert run(["plan", "--out", "p2.json"], env, tmp_path).returncode == 0
    assert run(["apply", "--yes", "p1.json"], env, tmp_path).returncode == 0
    stale = run(["apply", "--yes", "p2.json"], env, tmp_path)
    assert stale.returncode == 1
    assert "the plan was made against revision 0 but the store is at revision 1" in stale.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    broken = run(["apply", "--yes", str(bad)], env, tmp_path)
    assert broken.returncode == 2 and "bad.json" in broken.stderr


def test_policy_errors_are_all_reported_with_file_and_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    policies = tmp_path / "policies"
    write_policy(
        policies,
        "files.yaml",
        """
        apps:
          - app: dropbox
            tag: unsactioned
          - app: dropbocks
            tag: unsanctioned
        """,
    )
    result = run(["plan", "--detailed-exitcode"], env, tmp_path)
    assert result.returncode == 1
    assert (
        "policies/files.yaml:3: apps[0].tag: 'unsactioned' is not one of sanctioned, unsanctioned, monitored, unreviewed, in-review"
        in result.stderr
    )
    # The schema error and the unknown app come out of the same run, not one run apart.
    result = run(["plan"], env, tmp_path)
    assert (
        result.returncode == 1
        and "policies/files.yaml:4: apps.app: unknown app 'dropbocks' (did you mean 'dropbox'?)"
        in result.stderr
        and "2 error(s): the policy set was refused as a whole." in result.stderr
    )


def test_catalog_commands(tmp_path: Path, env: dict[str, str]) -> None:
    write_policy(
        tmp_path / "policies",
        "custom.yaml",
        """
        custom_apps:
          - id: acme-drop
            name: Acme Drop
            vendor: Acme
            category: file-sharing
            domains: [drop.acme.example]
        """,
    )
    listed = json.loads(run(["catalog", "list", "--json"], env, tmp_path).stdout)
    assert len(listed) >= 300 and any(a["id"] == "acme-drop" and a["custom"] for a in listed)
    found = run(["catalog", "search", "dropbox"], env, tmp_path).stdout.splitlines()
    assert found[0].split()[0] == "ID" and found[1].split()[0] == "dropbox"
    shown = run(["catalog", "show", "dropbox"], env, tmp_path)
    assert "dropbox.com" in shown.stdout and "risk score" in shown.stdout
    missing = run(["catalog", "show", "dropbx"], env, tmp_path)
    assert missing.returncode == 1 and "dropbox" in missing.stderr


def test_indicators_manual_add_list_export_delete(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "policies").mkdir()
    added = run(
        ["indicators", "add", "Evil.Example.", "--action", "block", "--severity", "high"],
        env,
        tmp_path,
    )
    assert added.returncode == 0, added.stderr
    listed = json.loads(run(["indicators", "list", "--json"], env, tmp_path).stdout)
    [item] = listed["value"]
    assert (
        item["indicatorValue"] == "evil.example"
        and item["source"] == "manual"
        and item["severity"] == "High"
    )
    exported = run(["indicators", "export", "--format", "csv"], env, tmp_path).stdout.splitlines()
    assert exported[0].startswith("id,source,indicatorValue") and "evil.example" in exported[1]
    assert run(["indicators", "delete", str(item["id"])], env, tmp_path).returncode == 0
    gone = run(["indicators", "delete", str(item["id"])], env, tmp_path)
    assert gone.returncode == 1 and "no manual indicator" in gone.stderr
    bad = run(["indicators", "add", "not a domain!", "--action", "nuke"], env, tmp_path)
    assert bad.returncode == 2


def test_explain_names_the_entry_that_sanctions_an_app(tmp_path: Path, env: dict[str, str]) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "a.yaml").write_text(
        "apps:\n  - {app: mega, tag: unsanctioned}\n  - {app: box, tag: sanctioned}\n"
    )
    explained = json.loads(run(["explain", "www.box.com", "--json"], env, tmp_path).stdout)
    assert explained["policy"] == {
        "app": "box", "tag": "sanctioned", "scope": None, "origin": "policies/a.yaml:3",
        "reason": "apps entry",
    }  # fmt: skip
    human = run(["explain", "box.com"], env, tmp_path).stdout
    assert "box is sanctioned — apps entry at policies/a.yaml:3" in human
    assert "no policy entry covers" not in human


def test_plan_says_which_entry_sanctions_an_app_it_stops_blocking(
    tmp_path: Path, env: dict[str, str]
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "a.yaml").write_text("apps:\n  - {app: box, tag: unsanctioned}\n")
    assert run(["apply", "--yes"], env, tmp_path).returncode == 0
    (policies / "a.yaml").write_text("apps:\n  - {app: box, tag: sanctioned}\n")
    planned = run(["plan"], env, tmp_path).stdout
    assert "# box: app box is now sanctioned by apps entry (policies/a.yaml:2)" in planned
    assert "no longer governed" not in planned
