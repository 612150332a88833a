"""`enforcer accounts` and `enforcer audit list`, in process, on both back ends: the account
commands of README.md and docs/accounts.md run as written, tokens are printed once and alone on
standard output, and every change is audited as the OS user or `--actor` (a failed one is not)."""

from __future__ import annotations

import csv
import getpass
import io
import re
import shlex
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from enforcer.cli import app
from enforcer.store.accounts import account_for_token
from enforcer.store.audit import list_audit

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- accounts -->\n```sh\n(.*?)```", re.S)


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ENFORCER_DATABASE_URL", db_url)
    return CliRunner()


def run(cli: CliRunner, line: str) -> Result:
    args = shlex.split(line, comments=True)
    assert args[0] == "enforcer", line
    return cli.invoke(app, args[1:])


@pytest.mark.parametrize("doc", ["README.md", "docs/accounts.md"])
def test_the_documented_account_commands_run_as_written(
    cli: CliRunner, engine: Engine, doc: str
) -> None:
    (block,) = BLOCK.findall((ROOT / doc).read_text())
    lines = [line for line in block.splitlines() if line.strip()]
    results = [run(cli, line) for line in lines]
    for line, result in zip(lines, results, strict=True):
        assert result.exit_code == 0, (line, result.output, result.exception)
    for line, result in zip(lines, results, strict=True):
        if " add " in line or " rotate " in line:  # the token alone, once
            assert re.fullmatch(r"[\w-]{40,}\n", result.stdout), line
    with engine.connect() as conn:
        actors = {e.actor for e in list_audit(conn)}
    assert actors == {getpass.getuser()}


def test_tokens_are_printed_once_alone_and_changes_are_audited(
    cli: CliRunner, engine: Engine
) -> None:
    added = run(cli, "enforcer --actor pat accounts add ann --role analyst")
    assert added.exit_code == 0 and "shown this once" in added.stderr
    token = added.stdout.strip()
    assert "\n" not in token and len(token) >= 40
    listed = run(cli, "enforcer accounts list").stdout
    assert re.search(r"^admin\s+admin\s+-\s+built in", listed, re.M)
    assert re.search(r"^ann\s+analyst\s+\S+ \S+\s+enabled", listed, re.M) and token not in listed
    for failing in ("accounts add ann --role admin", "accounts disable nobody", "accounts rotate admin",
                    "accounts add Bad_Name --role admin"):  # fmt: skip
        result = run(cli, f"enforcer --actor mallory {failing}")
        assert result.exit_code != 0 and result.exception is not None, failing
    rotated = run(cli, "enforcer accounts rotate ann").stdout.strip()
    assert rotated != token
    with engine.connect() as conn:
        assert account_for_token(conn, token) is None
        assert account_for_token(conn, rotated) is not None
    assert run(cli, "enforcer indicators add files.example --action block").exit_code == 0
    exported = run(cli, "enforcer audit list --format csv").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["actor"], r["action"]) for r in rows] == [
        (getpass.getuser(), "indicator.add"), (getpass.getuser(), "account.rotate"),
        ("pat", "account.add"),
    ]  # fmt: skip
    assert "mallory" not in exported
    table = run(cli, "enforcer audit list --actor pat").stdout
    assert "account.add" in table and "account.rotate" not in table
    bad = run(cli, "enforcer audit list --since yesterday")
    assert bad.exit_code == 2 and "30m, 24h, 7d" in bad.output
