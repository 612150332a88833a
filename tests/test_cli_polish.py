"""The command line as a new admin meets it: help that says what flags are, errors that list
what would have been right, and refusals that say why."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer

from enforcer.cli import app

REPO = Path(__file__).resolve().parent.parent


def _commands() -> Iterator[tuple[str, click.Command, click.Context]]:
    root = typer.main.get_command(app)

    def walk(
        cmd: click.Command, ctx: click.Context, path: str
    ) -> Iterator[tuple[str, click.Command, click.Context]]:
        yield path, cmd, ctx
        if hasattr(cmd, "list_commands"):  # a group (typer's groups are not click.Group)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
                assert sub is not None
                yield from walk(
                    sub, click.Context(sub, info_name=name, parent=ctx), f"{path} {name}"
                )

    yield from walk(root, click.Context(root, info_name="enforcer"), "enforcer")


def test_no_flag_is_shown_as_taking_a_value() -> None:
    helps = {path: cmd.get_help(ctx) for path, cmd, ctx in _commands()}
    assert len(helps) > 40
    assert [path for path, text in helps.items() if "<bool>" in text] == []
    assert "--alert / --no-alert" in helps["enforcer indicators add"]


def _enforcer(*args: str, cwd: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ENFORCER_DATABASE_URL": f"sqlite:///{db}"},
    )  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    for path in (REPO / "policies").glob("*.yaml"):
        (policies / path.name).write_text(path.read_text())
    return tmp_path


def test_an_invalid_choice_lists_the_valid_ones(workdir: Path) -> None:
    db = workdir / "s.db"
    action = _enforcer("indicators", "add", "x.example", "--action", "blok", cwd=workdir, db=db)
    assert action.returncode == 2
    assert "'blok' is not one of 'block', 'warn', 'audit', 'alert', 'allow'" in action.stderr
    fmt = _enforcer("plan", "--format", "yaml", cwd=workdir, db=db)
    assert fmt.returncode == 2 and "'yaml' is not one of 'text', 'json', 'markdown'" in fmt.stderr


def test_json_and_another_format_is_an_error_not_silently_json(workdir: Path) -> None:
    done = _enforcer("plan", "--json", "--format", "markdown", cwd=workdir, db=workdir / "s.db")
    assert done.returncode == 2 and done.stdout == ""
    assert "--json means --format json; it cannot go with --format markdown" in done.stderr


def test_explain_for_an_unknown_group_says_so(workdir: Path) -> None:
    db = workdir / "s.db"
    done = _enforcer("explain", "mega.nz", "--group", "enginering", cwd=workdir, db=db)
    assert done.returncode == 2
    assert (
        "unknown device group 'enginering': the policy set declares engineering, finance, marketing"
        in done.stderr
    )
    assert (
        _enforcer("explain", "mega.nz", "--group", "engineering", cwd=workdir, db=db).returncode
        == 0
    )


def test_deleting_a_policy_indicator_says_it_is_managed_by_policy(workdir: Path) -> None:
    db = workdir / "s.db"
    assert _enforcer("apply", "--yes", cwd=workdir, db=db).returncode == 0
    listed = _enforcer("indicators", "list", "--app", "mega", cwd=workdir, db=db).stdout
    first = next(line.split() for line in listed.splitlines() if "mega." in line)
    done = _enforcer("indicators", "delete", first[0], cwd=workdir, db=db)
    assert done.returncode == 2
    assert f"indicator {first[0]} ({first[1]} for app mega) is managed by policy" in done.stderr
    again = _enforcer("indicators", "list", "--app", "mega", cwd=workdir, db=db).stdout
    assert first[1] in again  # still there


def test_daemon_once_without_its_policy_directory_fails(tmp_path: Path) -> None:
    done = _enforcer(
        "daemon",
        "--once",
        "--policies",
        str(tmp_path / "nowhere"),
        cwd=tmp_path,
        db=tmp_path / "s.db",
    )
    assert done.returncode != 0
    assert "policy directory does not exist" in done.stdout + done.stderr


def test_catalog_search_has_a_header_row(tmp_path: Path) -> None:
    done = _enforcer("catalog", "search", "dropbox", cwd=tmp_path, db=tmp_path / "s.db")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "CATEGORY", "RISK"]
    assert lines[1].startswith("dropbox ")


def test_discovery_options_say_what_they_are() -> None:
    helps = {path: cmd.get_help(ctx) for path, cmd, ctx in _commands()}
    upload = helps["enforcer discovery upload"]
    assert "Print the upload's counts as JSON." in upload and "Same as --format json" not in upload
    assert "The machine's name, or its IP address" in helps["enforcer discovery machine"]
    collect = " ".join(helps["enforcer discovery collect"].split())
    assert "--map <str> For csv/jsonl: field=column" in collect
    assert "--flush-seconds <float range> Seconds between two roll-ups" in collect
