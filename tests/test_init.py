"""`enforcer init DIR`: the admin's own policy repository, from the examples shipped in the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from enforcer.cli.init import example_files

REPO = Path(__file__).resolve().parent.parent


def _enforcer(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_the_shipped_examples_are_the_clones_policies() -> None:
    tracked = sorted(
        p.name
        for p in (REPO / "policies").iterdir()
        if p.suffix in (".yaml", ".json") and p.name != "console.yaml"
    )
    assert [p.name for p in example_files()] == tracked
    for path in example_files():
        assert path.read_bytes() == (REPO / "policies" / path.name).read_bytes()


def test_init_writes_a_git_repository_that_validates(tmp_path: Path) -> None:
    done = _enforcer("init", "mine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    mine = tmp_path / "mine"
    assert {p.name for p in mine.iterdir()} >= {
        "00-organisation.yaml", "file-sharing.yaml", "policy.schema.json", ".gitignore", ".git",
    }  # fmt: skip
    assert f"export ENFORCER_POLICY_DIR={mine.resolve()}" in done.stdout
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=mine, capture_output=True, text=True, check=True
    )
    log = subprocess.run(["git", "log", "--oneline"], cwd=mine, capture_output=True, text=True)
    if log.returncode == 0:  # committed (git knows who the user is)
        assert status.stdout == "" and "Example policies from enforcer init" in log.stdout
    else:  # no identity: everything is staged, and the output said to commit
        assert "commit them with `git commit`" in done.stdout
    valid = _enforcer("policy", "validate", "--policies", str(mine), cwd=tmp_path)
    assert valid.returncode == 0 and "valid" in valid.stdout, valid.stderr


def test_init_refuses_a_directory_that_is_not_empty_and_can_skip_git(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    refused = _enforcer("init", "full", cwd=tmp_path)
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == "error: full already exists and is not empty: name a new directory"
    )
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]
    plain = _enforcer("init", "--no-git", "plain", cwd=tmp_path)
    assert plain.returncode == 0 and not (tmp_path / "plain" / ".git").exists()


def test_init_without_git_installed_says_so(tmp_path: Path) -> None:
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    done = _enforcer("init", "mine", cwd=tmp_path, env={"PATH": str(bare_path)})
    assert done.returncode == 0, done.stderr
    assert "git is not installed: the directory is not a git repository." in done.stdout
    assert (tmp_path / "mine" / "file-sharing.yaml").exists()
