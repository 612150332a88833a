"""Custom tags and reviews reach the store on apply (both back ends): the apps report filters by
custom tag, the review queue ranks the discovered apps nobody decided about, and the apps in
review show their owner, due date and whether they are overdue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.discovery.reports import apps_report
from enforcer.discovery.review import custom_tags_report, review_queue, reviews_report
from enforcer.pipeline.run import apply, make_plan
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.store.reviews import read_reviews
from enforcer.store.rollups import merge_rollup
from tests.conftest import write_policy

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
DAY = int(NOW.timestamp() // 86400)

# users per app: boxy 1, sharefast 2, pastey 3, chatbot 4, suite 1 (risk: sharefast and pastey
# are the catalog fixture's risky apps).
USERS = {"boxy": 1, "sharefast": 2, "pastey": 3, "chatbot": 4, "suite": 1}
POLICY = """
apps:
  - app: boxy
    tag: in-review
    tags: [approved-for-finance]
    review: {owner: ann, due: 2026-12-01, note: DPA pending}
  - app: suite
    tag: sanctioned
    tags: [approved-for-finance]
"""


def _discover(engine: Engine, catalog: Catalog) -> None:
    records = [
        Record(time=NOW.timestamp() - 60, host=f"{app}.example", src_ip="10.0.0.1",
               user=f"user{n}", device=f"pc-{n}", bytes_up=10, bytes_down=100, action="allowed")
        for app, users in USERS.items()
        for n in range(users)
    ]  # fmt: skip
    agg = Aggregator(Attributor(catalog))
    agg.add_all(records)
    merge_rollup(engine, agg.rollup())


def _apply(engine: Engine, pol: Path, catalog: Catalog) -> None:
    desired = expand(compile_policy(load_policy_files(pol), catalog, NOW))
    apply(engine, make_plan(engine, desired, impact_preview=False))


def test_apply_stores_custom_tags_and_reviews_for_reports_and_the_queue(
    engine: Engine, catalog: Catalog, tmp_path: Path
) -> None:
    _discover(engine, catalog)
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    _apply(engine, pol, catalog)
    with engine.connect() as conn:
        tagged = apps_report(conn, catalog, DAY - 6, DAY, custom_tag="approved-for-finance")
        everything = apps_report(conn, catalog, DAY - 6, DAY)
        queue = review_queue(conn, catalog, DAY - 6, DAY)
        reviews = reviews_report(conn, catalog, NOW.date())
        tags = custom_tags_report(conn)
    assert sorted(r["app"] for r in tagged) == ["boxy", "suite"]
    assert len(everything) == len(USERS)
    # boxy is in review and suite is sanctioned: neither is in the queue. The rest rank by
    # users x (1 + risk): pastey (3 users at 8.5) before sharefast (2 at 8.5) before chatbot
    # (4 users, risk 0).
    assert [r["app"] for r in queue] == ["pastey", "sharefast", "chatbot"]
    assert [r["priority"] for r in queue] == [28.5, 19.0, 4.0]
    assert reviews == [
        {"app": "boxy", "name": "Boxy", "tag": "in-review", "owner": "ann", "due": "2026-12-01",
         "overdue": True, "note": "DPA pending", "origin": "policies/a.yaml:2"},
    ]  # fmt: skip
    assert tags == [{"tag": "approved-for-finance", "apps": ["boxy", "suite"]}]

    # Deciding about boxy ends its review; a rule that blocks pastey takes it off the queue.
    write_policy(
        pol,
        "a.yaml",
        "apps:\n  - {app: boxy, tag: sanctioned}\n"
        "rules:\n  - {name: no paste, category: paste, tag: unsanctioned}\n",
    )
    _apply(engine, pol, catalog)
    with engine.connect() as conn:
        assert read_reviews(conn) == {}
        assert [r["app"] for r in review_queue(conn, catalog, DAY - 6, DAY)] == [
            "sharefast", "chatbot", "suite",
        ]  # fmt: skip
        assert apps_report(conn, catalog, DAY - 6, DAY, custom_tag="approved-for-finance") == []


def test_cli_review_queue_and_list(
    engine: Engine, db_url: str, catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from enforcer.cli import app

    _discover(engine, catalog)
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    _apply(engine, pol, catalog)
    monkeypatch.setenv("ENFORCER_DATABASE_URL", db_url)
    monkeypatch.setenv("ENFORCER_POLICY_DIR", str(pol))
    runner = CliRunner()
    listed = runner.invoke(app, ["review", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[1].split()[:5] == [
        "boxy", "in-review", "ann", "2026-12-01", "OVERDUE",
    ]  # fmt: skip
    queue = runner.invoke(app, ["review", "queue", "--json", "--since", "3650d"])
    assert queue.exit_code == 0, queue.output
    # The CLI ranks with the bundled catalog, which does not know the fixture's apps: each is
    # ranked at the middle risk, so by users alone.
    assert [r["app"] for r in json.loads(queue.output)] == ["chatbot", "pastey", "sharefast"]
    tagged = runner.invoke(
        app, ["discovery", "apps", "--tag", "approved-for-finance", "--json", "--since", "3650d"]
    )
    assert tagged.exit_code == 0, tagged.output
    assert sorted(r["app"] for r in json.loads(tagged.output)) == ["boxy", "suite"]
    bad = runner.invoke(app, ["review", "queue", "--since", "soon"])
    assert bad.exit_code == 2 and "7d or 24h" in bad.output
