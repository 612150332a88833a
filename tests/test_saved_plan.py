"""A saved plan file is applied only as it was made: signed by this store, still what its policy
set gives; and the store's digests come from its own rows, so a plan that does not say what it
writes cannot hide the difference from the next plan (issue 13, item 2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.errors import SavedPlanMismatchError
from enforcer.models import Action
from enforcer.pipeline.run import apply, check_saved_plan, make_plan
from enforcer.plan.model import ChangeAction
from enforcer.plan.planfile import PlanFileSignatureError, read_plan_file, write_plan_file
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.store.db import make_engine
from enforcer.store.migrate import upgrade
from enforcer.store.plan_key import plan_key
from tests.conftest import write_policy
from tests.test_cli import run

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
POLICY = "apps:\n  - {app: megashare, tag: unsanctioned}\n  - {app: pastey, tag: unsanctioned}\n"


def desired(pol: Path, catalog: Catalog):
    return expand(compile_policy(load_policy_files(pol), catalog, NOW))


def test_a_plan_file_is_signed_with_the_store_key_and_checked(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    key = plan_key(engine)
    assert plan_key(engine) == key and len(key) == 32
    path = tmp_path / "p.json"
    write_plan_file(path, make_plan(engine, desired(pol, catalog)), key)
    assert read_plan_file(path, key).counts[ChangeAction.CREATE] == 3

    data = json.loads(path.read_text())
    data["changes"][0]["after"]["action"] = "Allowed"  # the hand edit of the issue
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileSignatureError, match="changed after"):
        read_plan_file(path, key)
    del data["mac"]
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileSignatureError, match="not signed"):
        read_plan_file(path, key)

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    write_plan_file(path, make_plan(engine, desired(pol, catalog)), key)
    with pytest.raises(PlanFileSignatureError, match="another store"):
        read_plan_file(path, plan_key(other))
    other.dispose()


def test_a_changed_plan_is_refused_even_when_signed(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    # Whoever holds the key (it is in the store) still cannot apply other changes than the
    # policy set's: each change is checked against a fresh plan of the recorded policy.
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    want = desired(pol, catalog)
    plan = make_plan(engine, want)
    check_saved_plan(engine, plan, want)  # the honest plan passes
    first = plan.changes[0]
    assert first.after is not None
    edited = dataclasses.replace(
        plan,
        changes=(
            first._replace(after=first.after._replace(action=Action.ALLOWED)),
            *plan.changes[1:],
        ),
    )
    with pytest.raises(SavedPlanMismatchError, match=first.key[1]):
        check_saved_plan(engine, edited, want)
    write_policy(pol, "a.yaml", POLICY + "  - {app: chatbot, tag: unsanctioned}\n")
    with pytest.raises(SavedPlanMismatchError, match="another policy set"):
        check_saved_plan(engine, plan, desired(pol, catalog))


def test_store_digests_come_from_its_rows_so_a_bad_apply_shows_in_the_next_plan(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    want = desired(pol, catalog)
    assert apply(engine, make_plan(engine, want)) == 1
    # A plan that writes an Allowed where the policy wants Block, applied without the checks
    # (as a hand-edited file was before): the next plan must put the Block back.
    write_policy(pol, "a.yaml", POLICY + "  - {app: chatbot, tag: unsanctioned}\n")
    plan = make_plan(engine, desired(pol, catalog))
    create = next(c for c in plan.changes if c.action is ChangeAction.CREATE)
    assert create.after is not None
    tampered = dataclasses.replace(
        plan, changes=(create._replace(after=create.after._replace(action=Action.ALLOWED)),)
    )
    apply(engine, tampered)
    again = make_plan(engine, desired(pol, catalog))
    fixes = {c.key[1]: c for c in again.changes}
    assert fixes[create.key[1]].action is ChangeAction.UPDATE
    assert fixes[create.key[1]].after is not None
    assert fixes[create.key[1]].after.action is Action.BLOCK
    apply(engine, again)
    assert not make_plan(engine, desired(pol, catalog)).has_changes


def test_apply_planfile_refuses_a_hand_edited_file(tmp_path: Path, db_url: str) -> None:
    env = {"ENFORCER_DATABASE_URL": db_url}
    write_policy(tmp_path / "policies", "a.yaml", "apps:\n  - {app: pastebin, tag: unsanctioned}\n")
    assert run(["plan", "--out", "p.json"], env, tmp_path).returncode == 0
    path = tmp_path / "p.json"
    data = json.loads(path.read_text())
    for change in data["changes"]:
        change["after"]["action"] = "Allowed"
    path.write_text(json.dumps(data))
    refused = run(["apply", "--yes", "p.json"], env, tmp_path)
    assert refused.returncode == 2 and "changed after" in refused.stderr
    assert "Applied" not in refused.stdout
    # The untouched plan is still applied.
    assert run(["plan", "--out", "p.json"], env, tmp_path).returncode == 0
    applied = run(["apply", "--yes", "p.json"], env, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "No changes." in run(["plan"], env, tmp_path).stdout
