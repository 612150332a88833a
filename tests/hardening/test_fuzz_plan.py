"""Fuzz the saved-plan loader: `plan_from_dict` on any JSON raises ValueError or returns a Plan.

`enforcer apply PLANFILE` reads a file a person (or a CI job) handed over; the CLI turns a
ValueError into "PLANFILE: <what is wrong>", and anything else would be a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import example, given

from enforcer.decide.expand import DesiredState
from enforcer.decide.reconcile import reconcile
from enforcer.models import Action, Indicator
from enforcer.plan.model import ActualState
from enforcer.plan.planfile import plan_from_dict, plan_to_dict, plan_to_json
from tests.hardening.fuzzing import JSON, fuzz, mutations

pytestmark = pytest.mark.fuzz


def _seed() -> dict[str, Any]:
    """A real saved plan with every part filled: the starting point of mutations."""
    desired = DesiredState(
        indicators={
            ind.key: ind
            for ind in (
                Indicator("megashare.example", Action.BLOCK, app_id="megashare", title="t"),
                Indicator("chatbot.example", Action.AUDIT, scope="engineering"),
            )
        }
    )
    plan = reconcile(desired, ActualState(revision=3, digests={}, rows={}))
    data = json.loads(plan_to_json(plan))
    data["created_at"] = dt.datetime(2026, 11, 25, tzinfo=dt.UTC).isoformat()
    data["impact"] = {"megashare": {"requests": 3, "users": 1, "devices": 1}}
    data["conflicts"] = [
        {"domain": "idp.example", "scope": "", "app": "suite-drive", "action": "Block",
         "sanctioned_apps": ["suite"], "origin": "policies/a.yaml:3", "resolution": "allow",
         "resolved_at": "policies/a.yaml:9"}
    ]  # fmt: skip
    return data


SEED = _seed()


def _load(data: Any) -> None:
    text = json.dumps(data)  # what `enforcer plan --out` would have written, then damaged
    with contextlib.suppress(ValueError):
        plan_from_dict(json.loads(text))


def test_seed_round_trips() -> None:
    assert plan_to_dict(plan_from_dict(SEED))["changes"] == SEED["changes"]


@fuzz()
@given(JSON)
@example([])
@example({"format": SEED["format"], "base_revision": float("inf")})
def test_arbitrary_json(data: Any) -> None:
    _load(data)


@fuzz()
@given(mutations(SEED))
def test_mutated_plan(data: Any) -> None:
    _load(data)
