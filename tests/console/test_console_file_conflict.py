"""A conflict between the console's console.yaml and a policy file from git names the files the
right way round (issue 15): the error is at the console's entry, the newer one, and names the git
file's entry as the one already there. console.yaml sorts before file-sharing.yaml by name, so
this holds only because the loader reads the console's file last."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from enforcer.console import governance as gov
from enforcer.errors import PolicySetError
from enforcer.pipeline.load import load_state

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def _policies(tmp_path: Path) -> tuple[Path, int]:
    """A copy of the example policies, and the line where file-sharing.yaml tags mega."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policy_dir)
    lines = (policy_dir / "file-sharing.yaml").read_text().splitlines()
    return policy_dir, lines.index("  - app: mega") + 1


def test_the_console_check_names_its_own_entry_as_the_duplicate(tmp_path: Path) -> None:
    policy_dir, git_line = _policies(tmp_path)
    gov.set_tag(policy_dir, "mega", "sanctioned", actor="admin", now=NOW)
    (problem,) = gov.check(policy_dir)
    assert str(problem).startswith("policies/console.yaml:"), str(problem)
    assert f"already tagged at policies/file-sharing.yaml:{git_line}" in str(problem)


def test_a_live_console_file_is_read_after_the_git_files(tmp_path: Path) -> None:
    policy_dir, git_line = _policies(tmp_path)
    (policy_dir / "console.yaml").write_text("apps:\n  - app: mega\n    tag: sanctioned\n")
    with pytest.raises(PolicySetError) as raised:
        load_state(policy_dir)
    (problem,) = raised.value.errors
    assert str(problem) == (
        "policies/console.yaml:2: apps.app: 'mega' for all devices is already tagged at "
        f"policies/file-sharing.yaml:{git_line}"
    )
