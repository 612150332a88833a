"""A policy set's schema errors and catalog errors come out of one run, not one run apart."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from enforcer.catalog import Catalog
from enforcer.errors import PolicySetError
from enforcer.pipeline.load import load_state
from tests.conftest import write_policy

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _errors(directory: Path, catalog: Catalog) -> list[str]:
    with pytest.raises(PolicySetError) as info:
        load_state(directory, now=NOW, catalog=catalog)
    return [str(e) for e in info.value.errors]


def test_a_wrong_tag_and_an_unknown_app_are_reported_together(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "files.yaml",
        """
        apps:
          - app: boxy
            tag: sanctioned
          - app: pastey
            tag: unsactioned
          - app: dropbocks
            tag: unsanctioned
        """,
    )
    write_policy(pol, "other.yaml", "apps:\n  - app: megga\n    tag: unsanctioned\n")
    assert _errors(pol, catalog) == [
        "policies/files.yaml:5: apps[1].tag: 'unsactioned' is not one of sanctioned, "
        "unsanctioned, monitored, unreviewed, in-review",
        "policies/files.yaml:6: apps.app: unknown app 'dropbocks'",
        "policies/other.yaml:2: apps.app: unknown app 'megga'",
    ]


def test_a_refused_declaration_does_not_make_its_references_errors_too(
    tmp_path: Path, catalog: Catalog
) -> None:
    # The group and the custom app are refused by the schema; the entries using them are
    # consequences of those two errors, not mistakes of their own.
    write_policy(
        tmp_path / "policies",
        "a.yaml",
        """
        device_groups:
          - name: finance
            colour: red
        custom_apps:
          - id: intranet-wiki
            name: Wiki
            category: not-a-list-of-domains
            domains: 5
        apps:
          - app: intranet-wiki
            tag: sanctioned
            scope: [finance]
          - app: boxxy
            tag: unsanctioned
        """,
    )
    found = _errors(tmp_path / "policies", catalog)
    assert not any("intranet-wiki'" in e and "unknown app" in e for e in found), found
    assert not any("'finance' is not declared" in e for e in found), found
    assert any(
        e.startswith("policies/a.yaml:3: device_groups[0].colour: unknown field") for e in found
    )
    assert any(e.startswith("policies/a.yaml:") and "custom_apps[0]" in e for e in found)
    assert any("unknown app 'boxxy'" in e for e in found)


def test_policy_validate_prints_every_error_at_once(tmp_path: Path) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "files.yaml", "apps:\n  - app: box\n    tag: unsactioned\n")
    write_policy(pol, "more.yaml", "apps:\n  - app: dropbocks\n    tag: unsanctioned\n")
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "policy", "validate", "--policies", str(pol)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ENFORCER_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: policies/files.yaml:3: apps[0].tag: 'unsactioned' is not one of sanctioned, "
        "unsanctioned, monitored, unreviewed, in-review",
        "error: policies/more.yaml:2: apps.app: unknown app 'dropbocks' (did you mean 'dropbox'?)",
        "2 error(s): the policy set was refused as a whole.",
    ]
