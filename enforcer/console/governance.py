"""Governance from the console, without editing the store behind the policy's back.

Policy lives in git, so a tag chosen in the console is written to a policy file the console owns,
``console.yaml`` in the policy directory (round-trip YAML: comments and order survive). Until the
admin confirms, the edit is *staged* in ``.console/console.yaml`` (a hidden directory, which the
policy loader and so the daemon never read): the plan preview and the console's pages see the
policy set with the staged file in place (`effective_dir`), and only Apply publishes it as
``console.yaml`` and applies that exact plan. The same change is offered as a YAML snippet and a
patch to commit to the policy repository.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from sqlalchemy import Engine

from enforcer.errors import PolicyError, PolicySetError
from enforcer.pipeline.run import load_desired, load_state, make_plan
from enforcer.plan.model import Plan
from enforcer.plan.planfile import plan_to_dict
from enforcer.policy.loader import CONSOLE_FILE as CONSOLE_FILE  # the console writes it

STAGING_DIR = ".console"


def staged_path(policy_dir: Path) -> Path:
    """Where the console keeps its edit until Apply publishes it."""
    return policy_dir / STAGING_DIR / CONSOLE_FILE


def _working(policy_dir: Path) -> Path:
    """The console file as the console sees it: the staged edit if any, else the live file."""
    staged = staged_path(policy_dir)
    return staged if staged.exists() else policy_dir / CONSOLE_FILE


@contextlib.contextmanager
def effective_dir(policy_dir: Path) -> Iterator[Path]:
    """The policy directory with the staged console file in place of the live one.

    Without a staged edit this is `policy_dir` itself; with one, a temporary copy named like it
    (so locations still read ``policies/console.yaml:3``).
    """
    staged = staged_path(policy_dir)
    if not staged.exists():
        yield policy_dir
        return
    with tempfile.TemporaryDirectory(prefix="enforcer-console-") as tmp:
        copy = Path(tmp) / policy_dir.name
        shutil.copytree(policy_dir, copy, ignore=shutil.ignore_patterns(".*"))
        (copy / CONSOLE_FILE).write_text(staged.read_text(encoding="utf-8"), encoding="utf-8")
        yield copy


def staged_digest(policy_dir: Path) -> str:
    """A digest of the staged edit ("" without one): part of the console's cache keys."""
    staged = staged_path(policy_dir)
    return hashlib.sha256(staged.read_bytes()).hexdigest() if staged.exists() else ""


def publish(policy_dir: Path) -> None:
    """Make the staged edit the live ``console.yaml`` (atomically) and drop the staging copy."""
    staged = staged_path(policy_dir)
    if not staged.exists():
        return
    live = policy_dir / CONSOLE_FILE
    tmp = live.with_suffix(".yaml.tmp")
    tmp.write_text(staged.read_text(encoding="utf-8"), encoding="utf-8")
    tmp.replace(live)  # atomic: the daemon's watcher never reads half a file
    staged.unlink()


HEADER = (
    "Managed by the Enforcer console: tags and custom apps chosen there.\n"
    "Edit freely (the console keeps comments), or move entries into your own files and commit.\n"
)


@dataclass(frozen=True)
class Edit:
    """A change to console.yaml: the file's text before and after (for a patch or a rollback)."""

    path: Path
    before: str
    after: str

    def patch(self) -> str:
        """The change as a unified diff against the policy directory (``git apply -p1``)."""
        name = f"policies/{self.path.name}"
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile="/dev/null" if not self.before else f"a/{name}",
                tofile=f"b/{name}",
            )
        )

    def undo(self) -> None:
        """Put the file back as it was."""
        if self.before:
            self.path.write_text(self.before, encoding="utf-8")
        else:
            self.path.unlink(missing_ok=True)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def _load(path: Path) -> tuple[str, CommentedMap]:
    """The console file's text and document; `path` is the staging path or the live file."""
    source = path if path.exists() else path.parent.parent / CONSOLE_FILE
    if path.parent.name != STAGING_DIR:
        source = path
    before = source.read_text(encoding="utf-8") if source.exists() else ""
    doc = _yaml().load(before) if before.strip() else None
    if not isinstance(doc, CommentedMap):
        doc = CommentedMap()
        doc["version"] = 1
        doc.yaml_set_start_comment(HEADER)
    return before, doc


def _dump(doc: CommentedMap) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def _write(path: Path, before: str, doc: CommentedMap) -> Edit:
    after = _dump(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(after, encoding="utf-8")
    tmp.replace(path)  # atomic: the daemon's watcher never reads half a file
    return Edit(path, before, after)


def _section(doc: CommentedMap, name: str) -> CommentedSeq:
    seq = doc.get(name)
    if not isinstance(seq, CommentedSeq):
        seq = CommentedSeq()
        doc[name] = seq
    return seq


def set_tag(
    policy_dir: Path,
    app_id: str,
    tag: str,
    *,
    actor: str,
    now: dt.datetime,
    review: dict[str, str] | None = None,
) -> Edit:
    """Tag an app for all devices in console.yaml, replacing an earlier console entry for it.

    An empty `tag` removes the console's entry (the app falls back to the other files' rules).
    With ``in-review``, `review` holds the review's owner, due date (``YYYY-MM-DD``) and note;
    the policy check that follows refuses a missing owner or a bad date at its line.
    """
    path = staged_path(policy_dir)
    before, doc = _load(path)
    apps = _section(doc, "apps")
    for i in reversed(range(len(apps))):
        entry = apps[i]
        if isinstance(entry, dict) and entry.get("app") == app_id and not entry.get("scope"):
            del apps[i]
    if tag:
        entry = CommentedMap()
        entry["app"] = app_id
        entry["tag"] = tag
        if tag == "in-review":
            entry["review"] = _review(review or {})
        entry["reason"] = f"Set in the console by {actor} on {now:%Y-%m-%d %H:%M} UTC"
        apps.append(entry)
    if not apps:
        del doc["apps"]
    return _write(path, before, doc)


def _review(fields: dict[str, str]) -> CommentedMap:
    """A review mapping from the console's form (empty fields left out for the check to name)."""
    review = CommentedMap()
    for key in ("owner", "due", "note"):
        value = fields.get(key, "").strip()
        if value:
            review[key] = value
    return review


def add_custom_app(
    policy_dir: Path, *, app_id: str, name: str, category: str, domains: list[str]
) -> Edit:
    """Declare a custom app for unrecognised domains in console.yaml."""
    path = staged_path(policy_dir)
    before, doc = _load(path)
    entry = CommentedMap()
    entry["id"] = app_id
    entry["name"] = name
    entry["vendor"] = name
    entry["category"] = category
    entry["domains"] = CommentedSeq(domains)
    entry["description"] = "Created in the console from unrecognised domains"
    _section(doc, "custom_apps").append(entry)
    return _write(path, before, doc)


def snippet(edit: Edit, app_id: str) -> str:
    """The console's entry for one app as YAML to paste into a policy file."""
    doc = _yaml().load(edit.after) if edit.after.strip() else None
    apps = doc.get("apps", []) if isinstance(doc, dict) else []
    entries = [e for e in apps if isinstance(e, dict) and e.get("app") == app_id]
    if not entries:
        return ""
    out = CommentedMap()
    out["apps"] = CommentedSeq(entries)
    return _dump(out)


def current(policy_dir: Path) -> str:
    """console.yaml's text as the console sees it, staged edit included ("" when none yet)."""
    path = _working(policy_dir)
    return path.read_text(encoding="utf-8") if path.exists() else ""


def change_for(policy_dir: Path, app_id: str) -> Edit:
    """The console's entry for an app as a change to console.yaml (for the patch download)."""
    path = _working(policy_dir)
    after, doc = _load(path)
    apps = doc.get("apps")
    if isinstance(apps, CommentedSeq):
        for i in reversed(range(len(apps))):
            if isinstance(apps[i], dict) and apps[i].get("app") == app_id:
                del apps[i]
        if not apps:
            del doc["apps"]
    before = _dump(doc)
    return Edit(path, "" if before.strip() == "version: 1" else before, after)


def console_tag(policy_dir: Path, app_id: str) -> str:
    """The tag console.yaml gives an app for all devices ("" when it gives none)."""
    _, doc = _load(_working(policy_dir))
    for entry in doc.get("apps") or []:
        if isinstance(entry, dict) and entry.get("app") == app_id and not entry.get("scope"):
            return str(entry.get("tag", ""))
    return ""


def check(policy_dir: Path) -> list[PolicyError]:
    """Every error of the policy set with the staged edit in place (empty when it is valid)."""
    try:
        with effective_dir(policy_dir) as directory:
            load_state(directory)
    except PolicySetError as exc:
        return list(exc.errors)
    return []


def check_replaced(policy_dir: Path, path: Path, text: str) -> list[PolicyError]:
    """Every error of the policy set (staged edit in place) if the policy file `path` held
    `text` instead: a change to a git file is checked before it is offered."""
    with effective_dir(policy_dir) as directory, tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / policy_dir.name
        shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".*"))
        (copy / path.relative_to(policy_dir)).write_text(text, encoding="utf-8")
        try:
            load_state(copy)
        except PolicySetError as exc:
            return list(exc.errors)
    return []


def preview(engine: Engine, policy_dir: Path) -> Plan:
    """The plan from the store to the policy set with the staged edit in place, with its impact
    preview (PolicySetError if invalid)."""
    with effective_dir(policy_dir) as directory:
        return make_plan(engine, load_desired(directory))


def fingerprint(plan: Plan) -> str:
    """Identifies a plan's content (not when it was made): Apply must match the previewed plan."""
    data: dict[str, Any] = plan_to_dict(plan)
    data.pop("created_at", None)
    data.pop("impact", None)
    return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:32]
