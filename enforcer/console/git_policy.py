"""A console tag change for an app whose tag is written in a policy file from git.

The console owns ``console.yaml`` only; an app that another policy file already tags cannot be
tagged there too (the policy set would hold two entries for it). Instead the console makes the
change where it belongs: `retag` edits that file's entry (round-trip YAML: comments, order and
flow style survive), `GitChange.patch` is the unified diff to download and ``git apply``, and
`commit_on_branch` records it as a commit on a new branch when the policy directory is a git
checkout.

The branch is made with git's plumbing (``hash-object``, a temporary index, ``commit-tree``,
``branch``) on top of ``HEAD``: the checked-out branch, the index and the work tree are never
touched, so an admin's uncommitted edits are safe. The commit changes ``HEAD``'s version of the
file (the work tree's may differ); if ``HEAD`` has no such entry (it is an uncommitted edit),
nothing is committed and the patch is the way.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from enforcer.errors import Location
from enforcer.models import Tag
from enforcer.policy.loader import CONSOLE_FILE, read_policy_files

GIT_TIMEOUT = 20.0
"""Seconds any one git command may take (a hung git must not hang a console request)."""


class GitPolicyError(Exception):
    """The change cannot be committed (or made): the message says why, for the page."""


@dataclass(frozen=True)
class TagChange:
    """What the admin asked for: an app's tag for all devices, and its review if in review."""

    app_id: str
    tag: Tag
    owner: str = ""
    due: str = ""
    note: str = ""
    actor: str = "console"


@dataclass(frozen=True)
class GitChange:
    """The edit of a git policy file that makes a `TagChange`."""

    path: Path
    """The file in the policy directory."""
    name: str
    """Its name in the patch: relative to the repository root (or ``policies/...``)."""
    at: Location
    before: str
    after: str

    def patch(self) -> str:
        """The change as a unified diff (``git apply`` from the repository root)."""
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"a/{self.name}",
                tofile=f"b/{self.name}",
            )
        )


def git_entry(policy_dir: Path, app_id: str) -> Location | None:
    """Where a policy file other than console.yaml tags `app_id` for all devices (None when
    none does: the console may write its own entry)."""
    console = policy_dir / CONSOLE_FILE
    for located in read_policy_files(policy_dir).apps:
        entry = located.item
        if (
            entry.app == app_id
            and not entry.scope
            and policy_dir.parent / located.at.file != console
        ):
            return located.at
    return None


def _yaml(text: str = "") -> YAML:
    """A round-trip YAML that writes lists indented as `text` does (``- `` at column 0 or 2)."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    found = re.search(r"^( *)- ", text, flags=re.MULTILINE)
    offset = len(found[1]) if found else 2
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    return yaml


def retag(text: str, change: TagChange, *, now: dt.datetime) -> str:
    """`text` (a policy file) with the all-devices apps entry of the app changed to the new
    tag; GitPolicyError when the file has no such entry."""
    yaml = _yaml(text)
    doc = yaml.load(text)
    apps = doc.get("apps") if isinstance(doc, CommentedMap) else None
    entry = next(
        (
            e
            for e in apps or []
            if isinstance(e, CommentedMap) and e.get("app") == change.app_id and not e.get("scope")
        ),
        None,
    )
    if entry is None:
        raise GitPolicyError(f"the file has no apps entry for {change.app_id!r} for all devices")
    if entry.get("tag") != change.tag.value:
        # An action, severity or alert override was chosen for the old tag.
        for override in ("action", "severity", "generate_alert"):
            entry.pop(override, None)
    entry["tag"] = change.tag.value
    if change.tag.is_review:
        entry.pop("schedule", None)  # a review state enforces nothing, at no time
    if change.tag is Tag.IN_REVIEW:
        review = CommentedMap()
        review["owner"] = change.owner
        review["due"] = dt.date.fromisoformat(change.due) if _is_date(change.due) else change.due
        if change.note:
            review["note"] = change.note
        entry["review"] = review
    else:
        entry.pop("review", None)  # a decision (or unreviewed) ends the review
    if not entry.get("reason"):  # the file's own reason says more than who clicked
        entry["reason"] = f"Set in the console by {change.actor} on {now:%Y-%m-%d %H:%M} UTC"
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return bool(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text))


def change_for(policy_dir: Path, change: TagChange, *, now: dt.datetime) -> GitChange | None:
    """The edit of the git policy file that tags the app (None when no such file tags it)."""
    at = git_entry(policy_dir, change.app_id)
    if at is None:
        return None
    path = policy_dir.parent / at.file
    before = path.read_text(encoding="utf-8")
    after = retag(before, change, now=now)
    root = _repo_root(policy_dir)
    name = path.resolve().relative_to(root).as_posix() if root else at.file
    return GitChange(path, name, at, before, after)


def _git(cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        env={**os.environ, **(env or {}), "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    if done.returncode != 0:
        raise GitPolicyError(f"git {args[0]}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def _repo_root(policy_dir: Path) -> Path | None:
    """The root of the git checkout the policy directory is in (None: not a checkout)."""
    try:
        return Path(_git(policy_dir, "rev-parse", "--show-toplevel").strip()).resolve()
    except (GitPolicyError, OSError, subprocess.TimeoutExpired):
        return None


def can_commit(policy_dir: Path) -> bool:
    """Whether the policy directory is a git checkout with a commit to branch from."""
    root = _repo_root(policy_dir)
    if root is None:
        return False
    try:
        _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    except (GitPolicyError, subprocess.TimeoutExpired):
        return False
    return True


def commit_on_branch(
    policy_dir: Path, git_change: GitChange, change: TagChange, *, now: dt.datetime
) -> str:
    """Commit the change to ``HEAD``'s version of the file on a new branch; returns the
    branch's name. The current branch, index and work tree are left as they are."""
    root = _repo_root(policy_dir)
    if root is None:
        raise GitPolicyError(f"{policy_dir} is not in a git checkout")
    try:
        return _commit(root, git_change, change, now)
    except subprocess.TimeoutExpired as exc:
        raise GitPolicyError(f"git did not answer within {GIT_TIMEOUT:.0f} s") from exc


def _commit(root: Path, git_change: GitChange, change: TagChange, now: dt.datetime) -> str:
    name = git_change.name
    head = _git(root, "rev-parse", "--verify", "HEAD").strip()
    listed = _git(root, "ls-tree", head, "--", name).split()
    if not listed:
        raise GitPolicyError(f"{name} is not committed: commit it first, or apply the patch")
    mode = listed[0]
    committed = _git(root, "show", f"{head}:{name}")
    after = retag(committed, change, now=now)  # GitPolicyError: the entry is not committed
    blob = _git(root, "hash-object", "-w", "--stdin", stdin=after).strip()
    author = {
        "GIT_AUTHOR_NAME": change.actor,
        "GIT_AUTHOR_EMAIL": f"{change.actor}@enforcer-console",
        "GIT_COMMITTER_NAME": "Enforcer console",
        "GIT_COMMITTER_EMAIL": "console@enforcer",
    }
    with tempfile.TemporaryDirectory(prefix="enforcer-git-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(root, "read-tree", head, env=index)
        _git(root, "update-index", "--cacheinfo", f"{mode},{blob},{name}", env=index)
        tree = _git(root, "write-tree", env=index).strip()
    message = (
        f"{change.app_id}: {change.tag.value} (from the Enforcer console)\n\n"
        f"Set by {change.actor} on {now:%Y-%m-%d %H:%M} UTC in {name}."
    )
    commit = _git(root, "commit-tree", tree, "-p", head, "-m", message, env=author).strip()
    base = f"enforcer/{change.app_id}-{change.tag.value}-{now:%Y%m%d-%H%M%S}"
    for suffix in ("", *(f"-{n}" for n in range(2, 10))):
        try:
            _git(root, "branch", base + suffix, commit)
        except GitPolicyError:
            continue  # that name exists: try the next
        return base + suffix
    raise GitPolicyError(f"branches {base}... exist already")
