"""Expansion: indicators per domain, dedupe, shared-domain conflicts, parent collapse, scopes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.models import ALL_DEVICES, Action
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from tests.conftest import make_app, write_policy

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def desired_for(directory: Path, catalog: Catalog):
    return expand(compile_policy(load_policy_files(directory), catalog, NOW))


def test_unsanctioned_app_gives_one_indicator_per_domain(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - app: megashare
            tag: unsanctioned
          - app: chatbot
            tag: monitored
          - app: boxy
            tag: sanctioned
        """,
    )
    desired = desired_for(pol, catalog)
    got = {k: v.action for k, v in desired.indicators.items()}
    assert got == {
        ("", "megashare.example"): Action.BLOCK,
        ("", "megashare-static.example"): Action.BLOCK,
        ("", "chatbot.example"): Action.AUDIT,
        # api.chatbot.example is covered by chatbot.example with the same action: collapsed
    }
    assert desired.collapsed == 1
    ind = desired.indicators[("", "megashare.example")]
    assert ind.app_id == "megashare" and ind.title == "Megashare (unsanctioned)"
    origin, how = desired.origin_of(ind)
    assert str(origin) == "policies/a.yaml:2" and "apps entry" in how


def test_shared_domain_with_sanctioned_app_is_a_conflict_not_a_block(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - app: suite
            tag: sanctioned
          - app: suite-drive
            tag: unsanctioned
        """,
    )
    desired = desired_for(pol, catalog)
    # drive.suite.example is *below* the sanctioned suite.example: a narrower block, allowed.
    assert desired.indicators[("", "drive.suite.example")].action is Action.BLOCK
    # idp.example is a parent of the sanctioned login.idp.example: blocking it would break suite.
    assert ("", "idp.example") not in desired.indicators
    [conflict] = desired.conflicts
    assert conflict.domain == "idp.example" and conflict.sanctioned_apps == ("suite",)
    assert conflict.resolution is None and str(conflict.origin) == "policies/a.yaml:4"


def test_conflict_resolved_by_explicit_rule(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - app: suite
            tag: sanctioned
          - app: suite-drive
            tag: unsanctioned
        conflicts:
          - domain: IDP.example.
            resolve: block
            reason: suite moved to another IdP
        """,
    )
    desired = desired_for(pol, catalog)
    assert desired.indicators[("", "idp.example")].action is Action.BLOCK
    assert desired.conflicts[0].resolution == "block" and desired.conflicts[0].resolved_at.line == 7


def test_duplicate_domain_across_apps_merges_to_strongest(tmp_path: Path) -> None:
    catalog = Catalog([
        make_app("one", "paste", ["shared.example"]),
        make_app("two", "paste", ["shared.example", "two.example"]),
    ])  # fmt: skip
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - app: one
            tag: monitored
          - app: two
            tag: unsanctioned
            action: warn
        """,
    )
    desired = desired_for(pol, catalog)
    merged = desired.indicators[("", "shared.example")]
    assert merged.action is Action.WARN and merged.app_id == "two"


def test_collapse_only_under_nearest_parent_with_same_action(tmp_path: Path) -> None:
    catalog = Catalog([
        make_app("parent", "paste", ["x.example"]),
        make_app("middle", "paste", ["a.x.example"]),
        make_app("child", "paste", ["b.a.x.example", "c.x.example"]),
    ])  # fmt: skip
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - {app: parent, tag: unsanctioned}
          - {app: middle, tag: unsanctioned, action: warn}
          - {app: child, tag: unsanctioned}
        """,
    )
    desired = desired_for(pol, catalog)
    assert set(desired.indicators) == {
        ("", "x.example"),
        ("", "a.x.example"),
        ("", "b.a.x.example"),
    }
    assert desired.collapsed == 1  # c.x.example adds nothing under x.example


def test_scoped_sanctioned_exception_allows_for_its_group(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        device_groups: [{name: marketing}]
        apps:
          - {app: megashare, tag: unsanctioned}
        exceptions:
          - app: megashare
            scope: [marketing]
            expires: 2026-12-01T00:00:00Z
            reason: agency hand-off
        allow:
          - domain: public.pastey.example
            reason: docs we publish
        """,
    )
    desired = desired_for(pol, catalog)
    allowed = desired.indicators[("marketing", "megashare.example")]
    assert allowed.action is Action.ALLOWED
    assert allowed.expiration == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert desired.indicators[(ALL_DEVICES, "megashare.example")].action is Action.BLOCK
    entry = desired.indicators[(ALL_DEVICES, "public.pastey.example")]
    assert entry.action is Action.ALLOWED and entry.app_id == ""
    assert str(desired.origin_of(entry)[0]) == "policies/a.yaml:10"
