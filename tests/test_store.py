"""Plan and apply against a real store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.errors import StalePlanError
from enforcer.models import MANUAL, Action, Indicator
from enforcer.pipeline.run import apply, make_plan
from enforcer.plan.model import ChangeAction
from enforcer.plan.planfile import plan_from_dict, plan_to_dict
from enforcer.plan.render import render_text
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.store.by_name import covering
from enforcer.store.expiry import expire
from enforcer.store.feed import changes_since, current_revision, log_floor
from enforcer.store.indicators import apply_plan, read_app_tags
from enforcer.store.lookup import count_indicators, list_indicators
from enforcer.store.manual import add_manual, delete_manual
from enforcer.store.tables.indicators import ChangeLogRow, IndicatorRow
from tests.conftest import write_policy

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

POLICY = """
apps:
  - {app: megashare, tag: unsanctioned}
  - {app: pastey, tag: unsanctioned, action: warn}
  - {app: chatbot, tag: monitored}
"""


def desired(pol: Path, catalog: Catalog, now: dt.datetime = NOW):
    return expand(compile_policy(load_policy_files(pol), catalog, now))


def rows(engine: Engine) -> dict[tuple[str, str, str], str]:
    with engine.connect() as conn:
        return {
            (r.indicator.scope, r.indicator.value, r.source): r.indicator.action.value
            for r in list_indicators(conn, limit=10_000)
        }


def test_plan_apply_then_second_plan_is_empty(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    plan = make_plan(engine, desired(pol, catalog))
    assert plan.counts[ChangeAction.CREATE] == 4 and plan.base_revision == 0
    assert apply(engine, plan) == 1
    assert rows(engine)[("", "pastey.example", "policy")] == "Warn"
    again = make_plan(engine, desired(pol, catalog))
    assert not again.has_changes and again.summary() == "Plan: 0 to add, 0 to change, 0 to destroy."
    assert apply(engine, again) == 1  # no new revision for a no-op
    with engine.connect() as conn:
        assert read_app_tags(conn)[0][0] == "chatbot"


def test_policy_change_updates_and_deletes(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    apply(engine, make_plan(engine, desired(pol, catalog)))
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - {app: megashare, tag: unsanctioned}
          - {app: pastey, tag: unsanctioned}
        """,
    )
    plan = make_plan(engine, desired(pol, catalog))
    by_action = {c.action: c for c in plan.changes}
    assert plan.counts == {ChangeAction.CREATE: 0, ChangeAction.UPDATE: 1, ChangeAction.DELETE: 1}
    assert by_action[ChangeAction.UPDATE].before.action is Action.WARN
    assert by_action[ChangeAction.UPDATE].after.action is Action.BLOCK
    assert by_action[ChangeAction.DELETE].key == ("", "chatbot.example")
    assert apply(engine, plan) == 2
    assert not make_plan(engine, desired(pol, catalog)).has_changes
    with engine.connect() as conn:
        log = changes_since(conn, 1, [""])
    assert {(r["op"], r["value"], r["action"]) for r in log} == {
        ("upsert", "pastey.example", "Block"),
        ("remove", "chatbot.example", "Audit"),
    }


def test_stale_plan_is_refused(tmp_path: Path, catalog: Catalog, engine: Engine) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    first = make_plan(engine, desired(pol, catalog))
    second = make_plan(engine, desired(pol, catalog))
    apply(engine, first)
    with pytest.raises(StalePlanError, match="revision 0 but the store is at revision 1"):
        apply(engine, second)


def test_saved_plan_round_trips(tmp_path: Path, catalog: Catalog, engine: Engine) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    plan = make_plan(engine, desired(pol, catalog))
    loaded = plan_from_dict(plan_to_dict(plan))
    assert loaded.changes == plan.changes and loaded.bucket_digests == plan.bucket_digests
    apply(engine, loaded)
    assert not make_plan(engine, desired(pol, catalog)).has_changes


def test_manual_indicators_are_never_touched(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    manual = Indicator(value="megashare.example", action=Action.ALLOWED, title="exception by hand")
    new_id, revision = add_manual(engine, manual, actor="test")
    assert revision == 1
    other = Indicator(value="evil.example", action=Action.BLOCK)
    add_manual(engine, other, actor="test")
    apply(engine, make_plan(engine, desired(pol, catalog)))
    write_policy(pol, "a.yaml", "apps: []\n")
    plan = make_plan(engine, desired(pol, catalog))
    assert all(c.action is ChangeAction.DELETE for c in plan.changes)
    apply(engine, plan)
    assert rows(engine) == {
        ("", "megashare.example", MANUAL): "Allowed",
        ("", "evil.example", MANUAL): "Block",
    }
    delete_manual(engine, new_id, actor="test")
    assert list(rows(engine)) == [("", "evil.example", MANUAL)]


def test_apply_is_atomic_when_it_fails_midway(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    apply(engine, make_plan(engine, desired(pol, catalog)))
    before = rows(engine)
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - {app: sharefast, tag: unsanctioned}
          - {app: pastey, tag: monitored}
        """,
    )
    plan = make_plan(engine, desired(pol, catalog))
    assert (
        plan.counts[ChangeAction.CREATE]
        and plan.counts[ChangeAction.UPDATE]
        and plan.counts[ChangeAction.DELETE]
    )

    for step in ("deletes", "updates", "creates", "change_log", "digests"):

        def boom(at: str, step: str = step) -> None:
            if at == step:
                raise RuntimeError(f"crash after {at}")

        with pytest.raises(RuntimeError):
            apply_plan(engine, plan, fail=boom)
        assert rows(engine) == before, step
        with engine.connect() as conn:
            assert current_revision(conn) == 1
            assert conn.execute(select(func.count()).select_from(ChangeLogRow)).scalar() == 0
            assert log_floor(conn) == 1  # the first load is a snapshot, not a delta
    apply(engine, plan)
    assert not make_plan(engine, desired(pol, catalog)).has_changes


def test_expiry_removes_expired_indicators_and_keeps_digests_right(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        exceptions:
          - app: pastey
            tag: unsanctioned
            expires: 2026-11-26T00:00:00Z
            reason: incident 42
        """,
    )
    apply(engine, make_plan(engine, desired(pol, catalog)))
    add_manual(
        engine,
        Indicator(
            value="short.example", action=Action.BLOCK, expiration=NOW + dt.timedelta(hours=1)
        ),
        actor="t",
    )
    count, revision = expire(engine, NOW + dt.timedelta(days=2))
    assert count == 2 and revision == 3
    assert rows(engine) == {}
    # After the exception expired the policy wants nothing, and the store agrees.
    assert not make_plan(engine, desired(pol, catalog, NOW + dt.timedelta(days=2))).has_changes


def test_list_filters_and_covering(tmp_path: Path, catalog: Catalog, engine: Engine) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    apply(engine, make_plan(engine, desired(pol, catalog)))
    with engine.connect() as conn:
        assert count_indicators(conn, action=Action.BLOCK) == 2
        assert [s.indicator.value for s in list_indicators(conn, app_id="pastey")] == [
            "pastey.example"
        ]
        assert [s.indicator.value for s in covering(conn, "a.b.megashare.example")] == [
            "megashare.example"
        ]
        assert conn.execute(select(func.count()).select_from(IndicatorRow)).scalar() == 4


def test_an_expired_allow_entry_is_left_out_reported_and_never_flip_flops(
    tmp_path: Path, catalog: Catalog, engine: Engine
) -> None:
    # Issue 14, item 3: the Allowed of an expired allow entry replaced the app's Block; the
    # expiry job deleted it and the next reconcile made it again, every minute, for ever.
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - {app: megashare, tag: unsanctioned}
        allow:
          - domain: megashare.example
            expires: 2026-11-26T00:00:00Z
            reason: migration window
        """,
    )
    before = make_plan(engine, desired(pol, catalog))
    assert rows_of(before)["megashare.example"] == "Allowed" and not before.expired
    apply(engine, before)
    later = NOW + dt.timedelta(days=2)
    after = make_plan(engine, desired(pol, catalog, later))
    assert rows_of(after)["megashare.example"] == "Block"
    assert [(e.kind, e.subject) for e in after.expired] == [("allow", "megashare.example")]
    assert after.expired[0].origin.endswith("a.yaml:4")  # the entry's line
    text = render_text(after)
    assert "Expired policy entries" in text and "allow megashare.example expired" in text
    assert plan_from_dict(plan_to_dict(after)).expired == after.expired
    apply(engine, after)
    # The expiry job has nothing left to delete, and the next plan is empty: no churn.
    assert expire(engine, later)[0] == 0
    assert not make_plan(engine, desired(pol, catalog, later)).has_changes
    assert rows(engine)[("", "megashare.example", "policy")] == "Block"


def rows_of(plan) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.key[1]: c.after.action.value for c in plan.changes if c.after is not None}


def test_the_light_indicator_clause_names_the_models_columns(engine: Engine) -> None:
    """`store.by_name` reads the indicator table without its model (explain's start-up): its
    columns must be the model's, and what it reads the same as through the model."""
    from enforcer.store.by_name import INDICATOR, stored_of
    from enforcer.store.tables.indicators import IND

    assert set(INDICATOR.c.keys()) <= set(IND.c.keys())
    assert set(IND.c.keys()) - set(INDICATOR.c.keys()) == {"bucket"}
    expires = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    add_manual(
        engine, Indicator("x.example", Action.WARN, expiration=expires, scope="eng"), actor="t"
    )
    with engine.connect() as conn:
        (light,) = covering(conn, "a.x.example")
        (full,) = [stored_of(r) for r in conn.execute(select(IND))]
    assert light == full and light.indicator.expiration == expires
    assert light.created_at.tzinfo is not None
