"""Fuzz the policy loader: any text, any structure -> a loaded policy or PolicySetError, nothing else.

The policy repo is an input Enforcer does not control (a pull request, a merge gone wrong); the
daemon must refuse a bad set with errors a person can act on (file, line, field) and keep the
last good state, never die of an unexpected exception.
"""

from __future__ import annotations

import datetime as dt
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from enforcer.catalog import Catalog
from enforcer.decide.expand import expand
from enforcer.errors import PolicySetError
from enforcer.pipeline.run import load_state
from tests.conftest import catalog as _catalog_fixture
from tests.hardening.fuzzing import JSON, fuzz, mutations

pytestmark = pytest.mark.fuzz

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
CATALOG: Catalog = _catalog_fixture.__wrapped__()  # type: ignore[attr-defined]

VALID = {
    "version": 1,
    "device_groups": [{"name": "engineering", "description": "devs"}],
    "defaults": {"unsanctioned": {"action": "block", "severity": "high"}},
    "apps": [
        {"app": "megashare", "tag": "unsanctioned", "reason": "exfiltration"},
        {"app": "chatbot", "tag": "monitored", "scope": ["engineering"]},
    ],
    "rules": [{"name": "risky", "category": "paste", "min_risk": 3, "tag": "unsanctioned"}],
    "exceptions": [{"app": "megashare", "scope": ["engineering"], "expires": "2030-01-01",
                    "reason": "migration"}],
    "allow": [{"domain": "ok.megashare.example", "reason": "static"}],
    "conflicts": [{"domain": "idp.example", "resolve": "allow"}],
    "custom_apps": [{"id": "intranet-share", "name": "Share", "vendor": "Us", "category":
                     "file-sharing", "domains": ["share.corp.example"]}],
}  # fmt: skip
"""A policy file using every section: the seed that mutations start from."""

YAML_TEXT = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(list(":-[]{}&*!|>'\"%@`#,? \n\t")),
    max_size=300,
)


def _dump(tree: Any) -> bytes:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(tree, out)
    return out.getvalue().encode("utf-8", "surrogatepass")


def _load(data: bytes) -> None:
    """Load `data` as the only file of a policy directory; check the only way it may fail."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "policies"
        directory.mkdir()
        (directory / "fuzz.yaml").write_bytes(data)
        lines = data.count(b"\n") + 1
        try:
            state = load_state(directory, now=NOW, catalog=CATALOG)
        except PolicySetError as exc:
            assert exc.errors, "a refused set names at least one error"
            for err in exc.errors:
                assert err.location.file == "policies/fuzz.yaml", err
                assert 0 <= err.location.line <= lines + 1, err
                assert err.message, err
            return
        expand(state)  # a set that loads must also expand


@fuzz()
@given(YAML_TEXT)
@example("apps: [{app: megashare, tag: unsactioned}]")
@example("apps: &a [*a]")
@example("!!python/object:os.system {}")
@example("? [a, b]\n: c\n")
@example("version: 1\n---\nversion: 1\n")
def test_arbitrary_yaml_text(text: str) -> None:
    _load(text.encode("utf-8", "surrogatepass"))


FRAGMENTS = st.sampled_from(
    ["apps:", "rules:", "custom_apps:", "allow:", "version: 1", "\n", "\n  ", "\n- ", "- ", " ",
     "!!python/object/apply:os.system", "!!python/name:os.system", "!!set", "!!omap", "!!binary",
     "!!str", "!!int", "!!timestamp", "!custom", "&a ", "*a", "[", "]", "{", "}", ",", ": ", "? ",
     "app: megashare", "tag: unsanctioned", "domain: x.example", "'q'", '"\\u0000"', "|", ">",
     "---", "...", "%YAML 1.2", "#c", "null", "~", "2030-01-01", "1e400", "0x10", "- [a, b]"]
)  # fmt: skip
"""YAML's own syntax (tags, anchors, flow and block collections, directives) in pieces: random
characters rarely make a tag, which is what found the `line_of` crash below."""


@fuzz()
@given(st.lists(FRAGMENTS, max_size=30).map("".join))
@example('apps: !!python/object/apply:os.system ["echo pwned"]')
@example("!!int")
@example("!!set")
@example("? - [a, b]")
@example("!!int\n---]>")
def test_yaml_fragments(text: str) -> None:
    _load(text.encode("utf-8", "surrogatepass"))


@fuzz()
@given(st.binary(max_size=200))
@example(b"\xff\xfe\x00a")
def test_arbitrary_bytes(data: bytes) -> None:
    _load(data)


@fuzz()
@given(st.dictionaries(st.sampled_from(sorted(VALID)), JSON, max_size=4))
def test_arbitrary_sections(tree: dict[str, Any]) -> None:
    _load(_dump(tree))


@fuzz(100)
@given(mutations(VALID))
def test_mutated_valid_policy(tree: Any) -> None:
    _load(_dump(tree))


def test_errors_name_file_line_and_field() -> None:
    """The seed with one bad leaf: the error points at that leaf's line and field path."""
    tree = dict(VALID, apps=[VALID["apps"][0], {"app": "chatbot", "tag": "unsactioned"}])
    with pytest.raises(PolicySetError) as info:
        _load_strict(_dump(tree))
    (err,) = info.value.errors
    assert (err.field, err.location.file) == ("apps[1].tag", "policies/fuzz.yaml")
    text = _dump(tree).decode()
    assert "unsactioned" in text.splitlines()[err.location.line - 1]


def _load_strict(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "policies"
        directory.mkdir()
        (directory / "fuzz.yaml").write_bytes(data)
        load_state(directory, now=NOW, catalog=CATALOG)
