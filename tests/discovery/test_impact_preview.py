"""`enforcer plan` says what a new block would have affected, from the last 7 days of discovery data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.pipeline.run import apply, make_plan
from enforcer.plan.planfile import plan_from_dict, plan_to_dict
from enforcer.plan.render import render_markdown, render_text
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.store.rollups import merge_rollup
from tests.conftest import write_policy


def test_plan_shows_the_impact_of_each_new_block(
    tmp_path: Path, engine: Engine, catalog: Catalog
) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    recs = [
        Record(
            now - 3600 * i,
            "dl.sharefast.example",
            f"10.0.0.{i % 5}",
            user=f"u{i % 3}",
            device=f"pc{i % 4}",
        )
        for i in range(40)
    ] + [Record(now - 20 * 86400, "sharefast.example", "10.9.9.9", user="old", device="old-pc")]
    agg = Aggregator(Attributor(catalog))
    agg.add_all(recs)
    merge_rollup(engine, agg.rollup())

    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        "apps:\n  - {app: sharefast, tag: unsanctioned}\n  - {app: pastey, tag: monitored}\n",
    )
    desired = expand(compile_policy(load_policy_files(pol), catalog, dt.datetime.now(dt.UTC)))
    plan = make_plan(engine, desired)
    assert plan.impact == {
        "sharefast": {"requests": 40, "users": 3, "devices": 4}
    }  # audit-only pastey: none
    text = render_text(plan)
    assert (
        "impact: in the last 7 days this would have affected 40 requests by 3 users on 4 devices"
        in text
    )
    assert "| sharefast | 40 | 3 | 4 |" in render_markdown(plan)
    assert plan_from_dict(plan_to_dict(plan)).impact == plan.impact
    apply(engine, plan)
    assert make_plan(engine, desired).impact == {}  # already blocked: nothing new to preview
