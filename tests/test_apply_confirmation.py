"""`enforcer apply` asks a person, and only when there is one: a stale saved plan is refused
before anything is shown or asked, and without a terminal the refusal is a sentence."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _enforcer(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer", *args],
        env={**os.environ, **env}, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path, db_url: str) -> tuple[Path, dict[str, str]]:
    policies = tmp_path / "policies"
    policies.mkdir()
    for path in (REPO / "policies").glob("*.yaml"):
        (policies / path.name).write_text(path.read_text())
    return tmp_path, {"ENFORCER_DATABASE_URL": db_url}


def test_a_stale_saved_plan_is_refused_before_it_is_shown_or_asked(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = workdir
    assert _enforcer(["plan", "--out", "a.plan"], env, cwd).returncode == 0
    assert _enforcer(["indicators", "add", "moved.example"], env, cwd).returncode == 0
    # Run on a terminal, where the old code printed the plan and asked first.
    pid, fd = pty.fork()
    if pid == 0:  # the child: enforcer on the pseudo-terminal
        os.chdir(cwd)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "enforcer", "apply", "a.plan"],
            {**os.environ, **env},
        )
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if b"[y/N]" in output:  # the old behaviour: answer no and stop it
            os.write(fd, b"n\n")
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 1
    assert "the plan was made against revision 0 but the store is at revision 1" in text
    assert "Apply these changes?" not in text and "Plan:" not in text


def test_apply_without_a_terminal_and_without_yes_says_why_in_a_sentence(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = workdir
    done = _enforcer(["apply"], env, cwd)
    assert done.returncode == 1
    assert "Aborted" not in done.stderr and "[y/N]" not in done.stdout + done.stderr
    assert done.stderr.strip() == (
        "error: not applied: nobody can confirm, because standard input is not a terminal; "
        "review the plan above and run `enforcer apply --yes` to apply it."
    )
    assert "Plan: " in done.stdout  # the plan is still shown, for the review
    assert "No changes." not in _enforcer(["plan"], env, cwd).stdout  # nothing was applied
    applied = _enforcer(["apply", "--yes"], env, cwd)
    assert applied.returncode == 0 and "Applied." in applied.stdout
