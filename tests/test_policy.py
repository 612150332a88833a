"""Policy loading and evaluation: schema errors with file:line:field, precedence, scopes, expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from enforcer.catalog import Catalog
from enforcer.errors import PolicySetError
from enforcer.models import ALL_DEVICES, Action, Severity, Tag
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import load_policy_files
from enforcer.policy.schema import json_schema
from tests.conftest import write_policy

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def compile_dir(directory: Path, catalog: Catalog, now: dt.datetime = NOW):
    return compile_policy(load_policy_files(directory), catalog, now)


def errors_of(directory: Path, catalog: Catalog) -> list[str]:
    with pytest.raises(PolicySetError) as info:
        compile_dir(directory, catalog)
    return [str(e) for e in info.value.errors]


def test_bad_tag_names_file_line_and_field(tmp_path: Path, catalog: Catalog) -> None:
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
        """,
    )
    assert errors_of(pol, catalog) == [
        "policies/files.yaml:5: apps[1].tag: 'unsactioned' is not one of sanctioned, unsanctioned, monitored, unreviewed, in-review"
    ]


def test_every_error_of_every_file_is_reported_at_once(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        apps:
          - app: boxy
            tag: unsanctioned
            colour: red
        """,
    )
    write_policy(pol, "b.yaml", "apps: [\n")
    write_policy(
        pol,
        "c.yaml",
        """
        rules:
          - name: r
            category: file-sharing
            tag: monitored
            min_risk: 11
        """,
    )
    found = errors_of(pol, catalog)
    assert len(found) == 3
    assert found[0].startswith("policies/a.yaml:4: apps[0].colour: unknown field")
    assert found[1].startswith("policies/b.yaml:") and "YAML syntax" in found[1]
    assert found[2].startswith("policies/c.yaml:5: rules[0].min_risk:")


def test_semantic_errors_unknown_app_group_category_duplicates(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "a.yaml",
        """
        device_groups:
          - name: finance
        apps:
          - app: boxxy
            tag: unsanctioned
          - app: pastey
            tag: unsanctioned
            scope: [finanse]
        rules:
          - name: bad category
            category: file-shareing
            tag: unsanctioned
        """,
    )
    write_policy(
        pol,
        "b.yaml",
        """
        apps:
          - app: pastey
            tag: monitored
            scope: [finance]
          - app: pastey
            tag: monitored
            scope: [finance]
        """,
    )
    found = errors_of(pol, catalog)
    assert "policies/a.yaml:4: apps.app: unknown app 'boxxy' (did you mean 'boxy'?)" in found
    assert any(
        "a.yaml:6: apps.scope: device group 'finanse' is not declared" in e and "'finance'" in e
        for e in found
    )
    assert any("a.yaml:10: rules.category: unknown category 'file-shareing'" in e for e in found)
    assert (
        "policies/b.yaml:5: apps.app: 'pastey' for scope 'finance' is already tagged at policies/b.yaml:2"
        in found
    )


def test_custom_app_collision_and_custom_apps_usable(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "custom.yaml",
        """
        custom_apps:
          - id: acme-share
            name: Acme Share
            vendor: Acme
            category: file-sharing
            domains: [share.acme.example]
        apps:
          - app: acme-share
            tag: unsanctioned
        """,
    )
    state = compile_dir(pol, catalog)
    assert state.decisions[("acme-share", ALL_DEVICES)].tag is Tag.UNSANCTIONED
    assert state.catalog.get("acme-share").custom
    write_policy(
        pol,
        "clash.yaml",
        """
        custom_apps:
          - id: boxy
            name: Mine
            vendor: Me
            category: file-sharing
            domains: [boxy.me.example]
        """,
    )
    assert any(
        "clash.yaml:2: custom_apps.id: 'boxy' is a bundled catalog app" in e
        for e in errors_of(pol, catalog)
    )


def test_rule_by_category_and_risk_with_except(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "rules.yaml",
        """
        rules:
          - name: risky file sharing
            category: file-sharing
            min_risk: 7
            tag: unsanctioned
            except: [megashare]
          - name: everything risky is monitored
            min_risk: 5
            tag: monitored
        """,
    )
    state = compile_dir(pol, catalog)
    d = state.decisions
    assert (
        d[("sharefast", "")].tag is Tag.UNSANCTIONED and d[("sharefast", "")].action is Action.BLOCK
    )
    assert "risky file sharing" in d[("sharefast", "")].reason
    assert d[("sharefast", "")].origin.line == 2
    assert (
        d[("megashare", "")].tag is Tag.MONITORED
    )  # excepted from the first rule, caught by the second
    assert d[("megashare", "")].action is Action.AUDIT
    assert ("boxy", "") not in d  # low risk: no rule matches


def test_explicit_entry_beats_rule_and_exception_beats_both(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "p.yaml",
        """
        defaults:
          unsanctioned: {action: warn, severity: high, generate_alert: true}
        device_groups:
          - name: marketing
        rules:
          - name: paste sites
            category: paste
            tag: unsanctioned
        apps:
          - app: pastey
            tag: monitored
          - app: sharefast
            tag: unsanctioned
            action: block
        exceptions:
          - app: sharefast
            scope: [marketing]
            expires: 2026-12-01T00:00:00Z
            reason: campaign CHG-123
          - app: megashare
            tag: unsanctioned
            expires: 2026-11-01T00:00:00Z
            reason: already expired
        """,
    )
    state = compile_dir(pol, catalog)
    d = state.decisions
    assert d[("pastey", "")].tag is Tag.MONITORED
    assert d[("sharefast", "")].action is Action.BLOCK
    assert d[("sharefast", "")].severity is Severity.HIGH and d[("sharefast", "")].generate_alert
    exc = d[("sharefast", "marketing")]
    assert exc.tag is Tag.SANCTIONED and exc.expires == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert ("megashare", "") not in d  # expired exception is inactive
    later = compile_dir(pol, catalog, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    assert ("sharefast", "marketing") not in later.decisions


def test_two_files_with_defaults_is_an_error(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", "defaults:\n  monitored: {action: audit}\n")
    write_policy(pol, "b.yaml", "defaults:\n  monitored: {action: alert}\n")
    assert errors_of(pol, catalog) == [
        "policies/b.yaml:1: defaults: defaults are already set at policies/a.yaml:1"
    ]


def test_empty_and_non_mapping_files(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "empty.yaml", "# nothing yet\n")
    assert compile_dir(pol, catalog).decisions == {}
    write_policy(pol, "list.yaml", "- app: boxy\n")
    assert errors_of(pol, catalog) == [
        "policies/list.yaml:1: a policy file must be a mapping of sections"
    ]


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicySetError, match="policy directory does not exist"):
        load_policy_files(tmp_path / "nope")


def test_json_schema_is_published_and_current() -> None:
    import json

    published = Path(__file__).parent.parent / "policies" / "policy.schema.json"
    assert json.loads(published.read_text()) == json.loads(json.dumps(json_schema())), (
        "policies/policy.schema.json is stale: run `enforcer policy schema > policies/policy.schema.json`"
    )


def test_a_yaml_alias_bomb_is_refused_at_once_naming_file_and_line(tmp_path: Path) -> None:
    """Nine lines that stand for 9**8 nodes: refused in well under a second, not expanded."""
    import time

    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for n in range(1, 9):
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    (tmp_path / "good.yaml").write_text("apps:\n  - app: box\n    tag: sanctioned\n")
    started = time.perf_counter()
    with pytest.raises(PolicySetError) as caught:
        load_policy_files(tmp_path, display_root=tmp_path)
    assert time.perf_counter() - started < 5
    (error,) = caught.value.errors
    assert error.location.file == "bomb.yaml" and error.location.line == 8
    assert "alias" in error.message


def test_a_few_aliases_are_still_allowed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "apps:\n  - &box {app: box, tag: sanctioned}\n  - app: dropbox\n    tag: unsanctioned\n"
        "exceptions: []\n"
    )
    policy = load_policy_files(tmp_path, display_root=tmp_path)
    assert [a.item.app for a in policy.apps] == ["box", "dropbox"]
