"""Review states and custom tags in the policy: they decide nothing themselves, rules match custom
tags, a review carries owner/due/note, and the errors name file, line and field."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.errors import PolicySetError
from enforcer.models import ALL_DEVICES, Action, Tag
from enforcer.plan.model import Plan
from enforcer.plan.planfile import plan_from_dict, plan_to_dict
from enforcer.plan.render import render_markdown, render_text
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files, read_policy_files
from tests.conftest import write_policy

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)

REVIEWS = """
apps:
  - app: boxy
    tag: in-review
    tags: [approved-for-finance]
    review:
      owner: ann@example.com
      due: 2026-12-01
      note: DPA pending
  - app: pastey
    tag: unreviewed
  - app: chatbot
    tag: unsanctioned
    review: {owner: bob, due: 2026-12-20, note: asked to allow it}
  - app: sharefast
    tag: monitored
    tags: [approved-for-finance, eu-hosted]
rules:
  - name: block file sharing unless approved
    category: file-sharing
    except_tagged: [approved-for-finance]
    tag: unsanctioned
  - name: finance tools are sanctioned
    tagged: [approved-for-finance]
    tag: sanctioned
"""


def _compile(pol: Path, catalog: Catalog):  # type: ignore[no-untyped-def]
    return compile_policy(load_policy_files(pol), catalog, NOW)


def _errors(pol: Path, catalog: Catalog) -> list[str]:
    with pytest.raises(PolicySetError) as info:
        _compile(pol, catalog)
    return [str(e) for e in info.value.errors]


def test_review_states_decide_nothing_and_rules_match_custom_tags(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", REVIEWS)
    state = _compile(pol, catalog)
    # boxy is in review: its entry is skipped, and the rule on its custom tag sanctions it.
    boxy = state.decisions[("boxy", ALL_DEVICES)]
    assert (boxy.tag, boxy.reason) == (Tag.SANCTIONED, "rule 'finance tools are sanctioned'")
    # pastey is explicitly unreviewed and no rule matches it: no decision, no indicator.
    assert ("pastey", ALL_DEVICES) not in state.decisions
    desired = expand(state)
    assert not [i for i in desired.indicators.values() if i.app_id == "pastey"]
    # megashare (file sharing, no custom tag) is blocked; sharefast's own entry wins.
    assert state.decisions[("megashare", ALL_DEVICES)].action is Action.BLOCK
    assert state.decisions[("sharefast", ALL_DEVICES)].tag is Tag.MONITORED
    # A review on a sanction entry keeps the sanction in force.
    assert state.decisions[("chatbot", ALL_DEVICES)].action is Action.BLOCK
    assert state.custom_tags == {
        "boxy": frozenset({"approved-for-finance"}),
        "sharefast": frozenset({"approved-for-finance", "eu-hosted"}),
    }
    assert state.unreviewed == {"pastey"}
    review = state.reviews["boxy"]
    assert (review.owner, review.due, review.note, review.tag) == (
        "ann@example.com", dt.date(2026, 12, 1), "DPA pending", Tag.IN_REVIEW,
    )  # fmt: skip
    assert str(review.origin) == "policies/a.yaml:2"
    assert review.overdue(NOW) and not state.reviews["chatbot"].overdue(NOW)


def test_app_states_carry_custom_tags_and_reviews_through_the_plan_file(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", REVIEWS)
    apps = {a.app_id: a for a in expand(_compile(pol, catalog)).apps}
    assert apps["boxy"].custom_tags == ("approved-for-finance",)
    assert apps["boxy"].review is not None and apps["boxy"].review.due == "2026-12-01"
    assert apps["sharefast"].custom_tags == ("approved-for-finance", "eu-hosted")
    plan = Plan(base_revision=0, changes=(), apps=tuple(apps.values()), created_at=NOW)
    again = plan_from_dict(plan_to_dict(plan))
    assert again.apps == plan.apps
    # The plan names the overdue review (due yesterday), not the one due later.
    text = render_text(dataclasses.replace(plan, created_at=NOW))
    assert "Overdue reviews" in text
    assert "boxy: review by ann@example.com was due 2026-12-01 (policies/a.yaml:2)" in text
    assert "chatbot: review" not in text
    markdown = render_markdown(dataclasses.replace(plan, created_at=NOW))
    assert "#### Overdue reviews" in markdown and "- boxy: review by ann@example.com" in markdown


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "apps:\n  - app: boxy\n    tag: in-review\n",
            "policies/e.yaml:2: apps[0]: Value error, tag: in-review needs a review: "
            "{owner, due, note}",
        ),
        (
            "apps:\n  - app: boxy\n    tag: in-review\n    review:\n      owner: ann\n"
            "      due: 31.12.2026\n",
            "policies/e.yaml:6: apps[0].review.due: Value error, 31.12.2026 is not a date "
            "written YYYY-MM-DD (ISO 8601), such as 2026-12-31",
        ),
        (
            "apps:\n  - app: boxy\n    tag: in-review\n    review:\n      owner: ann\n"
            "      due: 2026-02-30\n",
            "policies/e.yaml:6: 2026-02-30 is not a date: day is out of range for month",
        ),
        (
            "apps:\n  - app: boxy\n    tag: in-review\n    action: block\n"
            "    review: {owner: ann, due: 2026-12-31}\n",
            "policies/e.yaml:2: apps[0]: Value error, action does not apply to tag: in-review "
            "(a review state enforces nothing)",
        ),
        (
            "apps:\n  - app: boxy\n    tag: sanctioned\n    tags: [monitored]\n",
            "policies/e.yaml:4: apps[0].tags[0]: Value error, 'monitored' is a built-in tag: "
            "a custom tag needs a name of its own",
        ),
        (
            "rules:\n  - name: r\n    category: paste\n    tag: in-review\n",
            "policies/e.yaml:4: rules[0].tag: Value error, 'in-review' is a review state, which "
            "only an apps entry can give: use one of sanctioned, unsanctioned, monitored",
        ),
    ],
)
def test_review_and_tag_errors_name_file_line_and_field(
    tmp_path: Path, body: str, expected: str
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "e.yaml", body)
    assert [str(e) for e in read_policy_files(pol).refused] == [expected]


def test_a_misspelt_custom_tag_in_a_rule_and_a_second_review_are_errors(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "e.yaml",
        """
        apps:
          - {app: boxy, tag: sanctioned, tags: [approved-for-finance]}
          - {app: pastey, tag: in-review, review: {owner: a, due: 2026-12-31}}
          - {app: pastey, tag: unsanctioned, scope: [eng], review: {owner: b, due: 2027-01-31}}
        device_groups:
          - name: eng
        rules:
          - name: finance
            tagged: [aproved-for-finance]
            tag: sanctioned
        """,
    )
    assert _errors(pol, catalog) == [
        "policies/e.yaml:4: apps.review: 'pastey' is already in review at policies/e.yaml:3",
        "policies/e.yaml:8: rules.tagged: custom tag 'aproved-for-finance' is not given to any "
        "app by an apps entry (did you mean 'approved-for-finance'?)",
    ]
