"""Setting up store contents for API tests through the real pipeline (plan and apply)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from enforcer.decide.expand import DesiredState
from enforcer.models import Action, Indicator
from enforcer.pipeline.run import apply, make_plan


def apply_indicators(engine: Engine, indicators: Iterable[Indicator]) -> int:
    """Make the store's policy indicators exactly `indicators`; returns the revision."""
    desired = DesiredState(indicators={ind.key: ind for ind in indicators})
    return apply(engine, make_plan(engine, desired), actor="test")


def block(value: str, scope: str = "", app: str = "") -> Indicator:
    return Indicator(
        value=value, action=Action.BLOCK, scope=scope, app_id=app, title=f"Block {value}"
    )
