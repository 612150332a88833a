"""`enforcer explain` names an app's review and custom tags (both back ends: it reads the store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from enforcer.cli import app
from tests.conftest import write_policy


def test_explain_names_the_review_and_custom_tags(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - app: dropbox
            tag: in-review
            tags: [approved-for-finance]
            review: {owner: ann, due: 2020-01-31, note: DPA}
          - app: box
            tag: unsanctioned
            review: {owner: bob, due: 2999-12-31}
        """,
    )
    monkeypatch.setenv("ENFORCER_DATABASE_URL", db_url)
    monkeypatch.setenv("ENFORCER_POLICY_DIR", str(pol))
    runner = CliRunner()
    text = runner.invoke(app, ["explain", "www.dropbox.com"])
    assert text.exit_code == 0, text.output
    assert (
        "  review: dropbox is in review by ann, due 2020-01-31 (OVERDUE) at policies/a.yaml:2; "
        "the rules decide it meanwhile"
    ) in text.output
    assert "  custom tags: dropbox: approved-for-finance" in text.output
    box = json.loads(runner.invoke(app, ["explain", "box.com", "--json"]).output)
    assert box["policy"]["reviews"] == [
        {"app": "box", "tag": "unsanctioned", "owner": "bob", "due": "2999-12-31",
         "overdue": False, "note": "", "origin": "policies/a.yaml:6"},
    ]  # fmt: skip
    assert "custom_tags" not in box["policy"]
