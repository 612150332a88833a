"""Read a policy directory: YAML with line numbers, every error collected, nothing half-loaded.

`load_policy_files` checks each file against the schema and returns a `PolicySet` whose every
entry carries its `Location`; `PolicySetError` lists *all* problems of all files at once.
`read_policy_files` returns the entries that passed the schema together with the errors of those
that did not, so that the catalog checks (unknown apps, groups) run in the same pass and an admin
sees a wrong tag and an unknown app in one run, not one run apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from enforcer.catalog import App
from enforcer.errors import Location, PolicyError, PolicySetError
from enforcer.policy.schema import (
    AlertPolicy,
    AllowEntry,
    AppEntry,
    ConflictResolution,
    Defaults,
    DeviceGroup,
    Exception_,
    PolicyFile,
    Rule,
    Schedule,
)

T = TypeVar("T")
POLICY_SUFFIXES = (".yaml", ".yml")
CONSOLE_FILE = "console.yaml"
"""The file the web console writes its tags into (`enforcer.console.governance`)."""


@dataclass(frozen=True, slots=True)
class Located(Generic[T]):
    """A policy entry and where it was written."""

    item: T
    at: Location


@dataclass(frozen=True)
class PolicySet:
    """Every policy file of a directory, merged, each entry with its location."""

    files: tuple[str, ...] = ()
    digest: str = ""
    """SHA-256 over the files' names and contents: equal digests mean an unchanged policy set."""
    defaults: Defaults = field(default_factory=Defaults)
    defaults_at: Location | None = None
    device_groups: tuple[Located[DeviceGroup], ...] = ()
    schedules: tuple[Located[Schedule], ...] = ()
    apps: tuple[Located[AppEntry], ...] = ()
    rules: tuple[Located[Rule], ...] = ()
    exceptions: tuple[Located[Exception_], ...] = ()
    allow: tuple[Located[AllowEntry], ...] = ()
    conflicts: tuple[Located[ConflictResolution], ...] = ()
    custom_apps: tuple[Located[App], ...] = ()
    alert_policies: tuple[Located[AlertPolicy], ...] = ()
    refused: tuple[PolicyError, ...] = ()
    """Schema errors of the entries left out of this set (only from `read_policy_files`)."""
    refused_names: frozenset[str] = frozenset()
    """Ids of custom apps and names of device groups and schedules whose entries were refused:
    a reference to one is a consequence of that error, not a second mistake, and is not reported
    again."""


def policy_files(directory: Path) -> list[Path]:
    """The policy files of a directory tree, in a stable order; hidden directories are skipped."""
    if not directory.is_dir():
        raise PolicySetError(
            [PolicyError(Location(str(directory)), "", "policy directory does not exist")]
        )
    found = [
        p
        for p in directory.rglob("*")
        if p.suffix in POLICY_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    # The web console's own file is read last: its entries are the newest, so a conflict with
    # a file from git is reported at the console's entry, naming the git file as the first.
    return sorted(
        found,
        key=lambda p: (
            p.relative_to(directory) == Path(CONSOLE_FILE),
            p.relative_to(directory).as_posix(),
        ),
    )


def directory_digest(directory: Path) -> str:
    """Digest of the policy files' names and bytes: cheap change detection for the daemon."""
    h = hashlib.sha256()
    for path in policy_files(directory):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def load_policy_files(directory: Path, *, display_root: Path | None = None) -> PolicySet:
    """Load and schema-check every policy file below `directory`; PolicySetError if any fails.

    File names in errors and locations are shown relative to `display_root` (default: the
    directory's parent, so errors read ``policies/apps.yaml:12``).
    """
    policy = read_policy_files(directory, display_root=display_root)
    if policy.refused:
        raise PolicySetError(list(policy.refused))
    return policy


def read_policy_files(directory: Path, *, display_root: Path | None = None) -> PolicySet:
    """Every entry of every policy file that passes the schema, with the schema errors of the
    rest in `PolicySet.refused` (an entry with an error is left out, its neighbours are kept)."""
    root = display_root if display_root is not None else directory.parent
    errors: list[PolicyError] = []
    merged = _Merged()
    digest = hashlib.sha256()
    paths = policy_files(directory)
    for path in paths:
        name = _display(path, root)
        data = path.read_bytes()
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + data + b"\0")
        parsed = _parse_file(name, data, errors)
        if parsed is not None:
            merged.add(name, parsed, errors=errors)
    return merged.freeze(tuple(_display(p, root) for p in paths), digest.hexdigest(), errors)


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One file's valid entries; `kept[section][i]` is the index in the file of entry i."""

    policy: PolicyFile
    tree: CommentedMap
    kept: dict[str, list[int]]
    refused_names: frozenset[str]


def _parse_file(name: str, data: bytes, errors: list[PolicyError]) -> _Parsed | None:
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(data)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        errors.append(PolicyError(Location(name, line), "", f"YAML syntax: {problem}"))
        return None
    except (YAMLError, UnicodeDecodeError) as exc:
        errors.append(PolicyError(Location(name), "", f"YAML syntax: {exc}"))
        return None
    except (IndexError, AttributeError, TypeError, ValueError) as exc:
        # ruamel's constructors fail this way on some malformed input instead of raising a
        # YAMLError: a bare `!!int` (IndexError), `!!set` on a scalar (AttributeError), a
        # sequence as a mapping key `? - [a]` (TypeError). Found by tests/hardening's fuzzing:
        # the file is refused with its name like any syntax error, not with a traceback.
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        bad_date = _bad_date(data) if isinstance(exc, ValueError) else None
        if bad_date is not None:
            line, text = bad_date
            errors.append(PolicyError(Location(name, line), "", f"{text} is not a date: {detail}"))
        else:
            errors.append(PolicyError(Location(name), "", f"YAML cannot be read: {detail}"))
        return None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, CommentedMap):
        errors.append(
            PolicyError(Location(name, 1), "", "a policy file must be a mapping of sections")
        )
        return None
    problem = _alias_problem(tree)
    if problem is not None:
        line, message = problem
        errors.append(PolicyError(Location(name, line), "", message))
        return None
    plain = _plain(tree)
    try:
        return _Parsed(PolicyFile.model_validate(plain), tree, {}, frozenset())
    except ValidationError as exc:
        errors.extend(_validation_errors(name, tree, exc))
        return _without_refused(plain, tree, exc)


_DATE_LIKE = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?$")


def _bad_date(data: bytes) -> tuple[int, str] | None:
    """(line, text) of the first unquoted date that does not exist (``due: 2026-02-30``):
    YAML reads such a scalar as a timestamp and fails without saying where."""
    try:
        root = YAML(typ="rt").compose(data)
    except (YAMLError, ValueError, TypeError, IndexError, AttributeError):
        return None
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode):
            if node.style is None and _DATE_LIKE.match(str(node.value)):
                try:
                    dt.date.fromisoformat(str(node.value)[:10])
                except ValueError:
                    return node.start_mark.line + 1, str(node.value)
        elif isinstance(node, MappingNode):
            stack.extend(v for pair in reversed(node.value) for v in reversed(pair))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
    return None


_NAMED_SECTIONS = {"device_groups": "name", "schedules": "name", "custom_apps": "id"}
"""Sections whose entries declare a name that other entries refer to, and that name's field."""


def _without_refused(plain: Any, tree: CommentedMap, exc: ValidationError) -> _Parsed | None:
    """The file without the entries (or sections) that failed the schema, or None when what
    failed is the file as a whole (its version, its shape)."""
    bad_items: dict[str, set[int]] = {}
    bad_sections: set[str] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        if not loc or loc[0] == "version" or not isinstance(loc[0], str):
            return None
        section = loc[0]
        if len(loc) > 1 and isinstance(loc[1], int) and isinstance(plain.get(section), list):
            bad_items.setdefault(section, set()).add(loc[1])
        else:
            bad_sections.add(section)
    refused_names: set[str] = set()
    kept: dict[str, list[int]] = {}
    pruned = dict(plain)
    for section in bad_sections:
        pruned.pop(section, None)
    for section, bad in bad_items.items():
        if section in bad_sections:
            continue
        entries = plain[section]
        kept[section] = [i for i in range(len(entries)) if i not in bad]
        pruned[section] = [entries[i] for i in kept[section]]
        key = _NAMED_SECTIONS.get(section)
        for i in bad:
            declared = entries[i].get(key) if key and isinstance(entries[i], dict) else None
            if isinstance(declared, str):
                refused_names.add(declared)
    try:
        policy = PolicyFile.model_validate(pruned)
    except ValidationError:  # a whole-file rule failed: the errors above already say why
        return None
    return _Parsed(policy, tree, kept, frozenset(refused_names))


ALIAS_BUDGET = 10_000
"""Most nodes that YAML aliases may add to a policy file once expanded. Aliases (``*name``)
repeat a node without copying it, so nine lines can stand for billions of nodes (an "alias
bomb"); a policy file needs few or none."""


def _alias_problem(tree: Any) -> tuple[int, str] | None:
    """(line, message) when the file's aliases expand past `ALIAS_BUDGET` nodes or refer to
    themselves; None otherwise. Linear in the file's distinct nodes (sizes are memoised)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    added = 0
    worst: tuple[int, Any] = (0, None)

    def size(node: Any) -> int:
        nonlocal added, worst
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in open_:
            raise _Recursive(node)
        known = sizes.get(key)
        if known is not None:  # a second reference: an alias
            added += known
            if known > worst[0]:
                worst = (known, node)
            return known
        open_.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1 + sum(size(child) for child in children)
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        size(tree)
    except _Recursive as exc:
        return _line_of_node(exc.node), "a YAML alias refers to the node that contains it"
    except RecursionError:
        return 1, "YAML nested too deeply"
    if added > ALIAS_BUDGET:
        return _line_of_node(worst[1]), (
            f"YAML aliases expand to more than {ALIAS_BUDGET} nodes (an alias bomb?): "
            "write the entries out instead"
        )
    return None


class _Recursive(Exception):
    def __init__(self, node: Any) -> None:
        super().__init__()
        self.node = node


def _line_of_node(node: Any) -> int:
    lc = getattr(node, "lc", None)
    line = getattr(lc, "line", None)
    return line + 1 if isinstance(line, int) else 1


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists (what pydantic expects)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, dt.datetime):
        # ruamel's TimeStamp subclass carries YAML details; keep a plain datetime.
        return dt.datetime(
            node.year, node.month, node.day, node.hour, node.minute, node.second,
            node.microsecond, node.tzinfo,
        )  # fmt: skip
    if isinstance(node, dt.date):
        return node.isoformat()  # a bare date: midnight UTC once validated
    return node


def _validation_errors(
    name: str, tree: CommentedMap, exc: ValidationError
) -> Iterator[PolicyError]:
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = line_of(tree, loc)
        yield PolicyError(Location(name, line), field_path(loc), _message(err))


def field_path(loc: Sequence[Any]) -> str:
    """``('apps', 3, 'tag')`` as ``apps[3].tag``; pydantic's union branch names are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not _is_type_tag(part):
            out += f".{part}" if out else part
    return out


def _is_type_tag(part: str) -> bool:
    return part in {"str", "int", "float", "bool"} or "[" in part or part.startswith("function-")


def line_of(tree: Any, loc: Iterable[Any]) -> int:
    """1-based line of the deepest node of `loc` that exists in the YAML tree."""
    line = 1
    node = tree
    for part in loc:
        # ruamel keeps no position for the items of some nodes (a tagged flow sequence such as
        # `!!python/object/apply:os.system [x]`): stop at the deepest node that has one.
        if isinstance(node, CommentedMap) and part in node and node.lc.key(part) is not None:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif (
            isinstance(node, CommentedSeq)
            and isinstance(part, int)
            and part < len(node)
            and node.lc.item(part) is not None
        ):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        elif isinstance(part, str) and _is_type_tag(part):
            continue
        else:
            break
    return line


def _message(err: Any) -> str:
    kind = err.get("type", "")
    given = err.get("input")
    ctx = err.get("ctx") or {}
    if kind in ("enum", "literal_error") and "expected" in ctx:
        expected = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"{given!r} is not one of {expected}"
    if kind == "extra_forbidden":
        return "unknown field (check its spelling against docs/policy.md)"
    if kind == "missing":
        return "required field is missing"
    return str(err.get("msg", "invalid value"))


class _Merged:
    """Accumulates the sections of several files, keeping each entry's location."""

    def __init__(self) -> None:
        self.refused_names: set[str] = set()
        self.defaults: Defaults | None = None
        self.defaults_at: Location | None = None
        self.sections: dict[str, list[Located[Any]]] = {
            "device_groups": [],
            "schedules": [],
            "apps": [],
            "rules": [],
            "exceptions": [],
            "allow": [],
            "conflicts": [],
            "custom_apps": [],
            "alert_policies": [],
        }

    def add(self, name: str, parsed: _Parsed, *, errors: list[PolicyError]) -> None:
        policy, tree = parsed.policy, parsed.tree
        self.refused_names.update(parsed.refused_names)
        if policy.defaults is not None:
            here = Location(name, line_of(tree, ("defaults",)))
            if self.defaults_at is not None:
                errors.append(
                    PolicyError(here, "defaults", f"defaults are already set at {self.defaults_at}")
                )
            else:
                self.defaults, self.defaults_at = policy.defaults, here
        for section, entries in self.sections.items():
            items: list[BaseModel] = getattr(policy, section)
            kept = parsed.kept.get(section)
            for index, item in enumerate(items):
                in_file = kept[index] if kept is not None else index
                entries.append(Located(item, Location(name, line_of(tree, (section, in_file)))))

    def freeze(self, files: tuple[str, ...], digest: str, refused: list[PolicyError]) -> PolicySet:
        s = self.sections
        return PolicySet(
            files=files,
            digest=digest,
            defaults=self.defaults or Defaults(),
            defaults_at=self.defaults_at,
            device_groups=tuple(s["device_groups"]),
            schedules=tuple(s["schedules"]),
            apps=tuple(s["apps"]),
            rules=tuple(s["rules"]),
            exceptions=tuple(s["exceptions"]),
            allow=tuple(s["allow"]),
            conflicts=tuple(s["conflicts"]),
            custom_apps=tuple(s["custom_apps"]),
            alert_policies=tuple(s["alert_policies"]),
            refused=tuple(refused),
            refused_names=frozenset(self.refused_names),
        )
