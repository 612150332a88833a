"""A console tag change for an app tagged in a git policy file: the YAML patch against that file,
and a commit on a new branch that leaves the checked-out branch, index and work tree alone."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from enforcer.console.git_policy import (
    GitPolicyError,
    TagChange,
    can_commit,
    change_for,
    commit_on_branch,
    retag,
)
from enforcer.models import Tag

NOW = dt.datetime(2026, 12, 2, 10, 30, tzinfo=dt.UTC)
FILE = """\
# File sharing: decided by the security team.
apps:
  - app: boxy
    tag: unsanctioned   # no DPA
    action: warn
  - {app: pastey, tag: monitored}
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_retag_keeps_comments_and_flow_style_and_writes_the_review() -> None:
    change = TagChange(
        "boxy", Tag.IN_REVIEW, owner="ann", due="2026-12-31", note="DPA", actor="kim"
    )
    after = retag(FILE, change, now=NOW)
    assert after == (
        "# File sharing: decided by the security team.\n"
        "apps:\n"
        "  - app: boxy\n"
        "    tag: in-review      # no DPA\n"
        "    review:\n"
        "      owner: ann\n"
        "      due: 2026-12-31\n"
        "      note: DPA\n"
        "    reason: Set in the console by kim on 2026-12-02 10:30 UTC\n"
        "  - {app: pastey, tag: monitored}\n"
    )
    decided = retag(after, TagChange("boxy", Tag.SANCTIONED, actor="kim"), now=NOW)
    assert "review" not in decided and "    tag: sanctioned     # no DPA\n" in decided
    flow = retag(FILE, TagChange("pastey", Tag.SANCTIONED, actor="kim"), now=NOW)
    assert "  - {app: pastey, tag: sanctioned, reason: Set in the console by kim" in flow
    with pytest.raises(GitPolicyError, match="no apps entry for 'chatbot'"):
        retag(FILE, TagChange("chatbot", Tag.SANCTIONED), now=NOW)


def test_commit_on_a_new_branch_leaves_the_checkout_alone(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    pol = repo / "policies"
    pol.mkdir(parents=True)
    (pol / "files.yaml").write_text(FILE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "first")
    # An uncommitted edit in the work tree and a staged one: both must survive.
    (pol / "files.yaml").write_text(FILE + "# my local note\n")
    (pol / "other.yaml").write_text("apps: []\n")
    git(repo, "add", "policies/other.yaml")
    status_before = git(repo, "status", "--porcelain")

    change = TagChange("boxy", Tag.SANCTIONED, actor="kim")
    git_change = change_for(pol, change, now=NOW)
    assert git_change is not None
    assert str(git_change.at) == "policies/files.yaml:3"
    assert git_change.patch().startswith("--- a/policies/files.yaml\n+++ b/policies/files.yaml\n")
    assert (
        "-    tag: unsanctioned   # no DPA\n-    action: warn\n+    tag: sanctioned     # no DPA\n"
    ) in git_change.patch()
    # The patch applies to the work tree as it is (with the local note).
    (tmp_path / "p.diff").write_text(git_change.patch())
    git(repo, "apply", "--check", str(tmp_path / "p.diff"))

    assert can_commit(pol)
    branch = commit_on_branch(pol, git_change, change, now=NOW)
    assert branch == "enforcer/boxy-sanctioned-20261202-103000"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(repo, "status", "--porcelain") == status_before
    assert (pol / "files.yaml").read_text() == FILE + "# my local note\n"
    committed = git(repo, "show", f"{branch}:policies/files.yaml")
    assert "tag: sanctioned     # no DPA" in committed and "my local note" not in committed
    assert git(repo, "log", "-1", "--format=%an|%s", branch).strip() == (
        "kim|boxy: sanctioned (from the Enforcer console)"
    )
    assert git(repo, "rev-parse", f"{branch}~1") == git(repo, "rev-parse", "main")
    # The same change again gets a branch of its own.
    assert commit_on_branch(pol, git_change, change, now=NOW) == branch + "-2"


def test_no_branch_outside_a_checkout_or_for_an_uncommitted_entry(tmp_path: Path) -> None:
    pol = tmp_path / "plain" / "policies"
    pol.mkdir(parents=True)
    (pol / "files.yaml").write_text(FILE)
    assert not can_commit(pol)
    repo = tmp_path / "repo"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies" / "files.yaml").write_text("apps: []\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "first")
    (repo / "policies" / "files.yaml").write_text(FILE)  # the entry exists only in the work tree
    change = TagChange("boxy", Tag.SANCTIONED, actor="kim")
    git_change = change_for(repo / "policies", change, now=NOW)
    assert git_change is not None
    with pytest.raises(GitPolicyError, match="no apps entry for 'boxy'"):
        commit_on_branch(repo / "policies", git_change, change, now=NOW)
    assert git(repo, "branch", "--list").split() == ["*", "main"]
