"""The one domain matcher, shared by the DNS and proxy front ends, discovery and `explain`.

Semantics (documented in docs/matching.md and tested in tests/test_matcher.py):

* An entry for ``example.com`` matches ``example.com`` and every name below it.
* The most specific matching entry wins: an ``Allowed`` entry for ``docs.example.com`` beats a
  ``Block`` on ``example.com``, and a ``Block`` on ``evil.example.com`` beats an ``Allowed`` on
  ``example.com``.
* Two entries for the same name (for instance one for all devices and one for the device's
  group) are merged by strength: Allowed > Block > Warn > Alert > Audit.
* Names are compared case-insensitively, with or without a trailing dot; internationalised names
  are compared in their ASCII (punycode) form.

A lookup costs one dict probe per label of the queried name, whatever the number of entries.

Memory: a device may hold a million entries, so an entry costs only its key (the domain string)
and a dict slot. The value is the index of a `MatchRule` (action, app) shared by every entry with
the same action and app, and the `Verdict` (which names the matched domain) is built only when
a lookup hits. The index is a small int on purpose: a dict of strings and ints holds nothing
the garbage collector must visit, whereas a dict of a million tuples made every full
collection walk it (about 20 ms with the event loop, and every DNS answer, stopped).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from enforcer.models import Action, normalize


class Verdict(NamedTuple):
    """What the matcher decided for a name, and why (the entry that decided it)."""

    action: Action | None
    """None when no entry matched: the name is not governed."""
    indicator: str = ""
    """The entry (a domain) that matched, empty when none did."""
    app_id: str = ""
    """The catalog app the deciding entry came from, if any."""

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK


NOT_GOVERNED = Verdict(None)

_new_tuple = tuple.__new__
"""Builds a `Verdict` without the Python-level ``NamedTuple.__new__`` (a hit's one allocation)."""


class MatchRule(NamedTuple):
    """What an entry says (its action and app), shared by all entries that say the same."""

    action: Action
    app_id: str


class MatchEntry(NamedTuple):
    """One entry given to the matcher."""

    domain: str
    action: Action
    app_id: str = ""


class Matcher:
    """Maps a queried name to a `Verdict` by its most specific matching entry."""

    __slots__ = ("_entries", "_rule_ids", "_rules")

    def __init__(self, entries: Iterable[MatchEntry] = ()) -> None:
        self._entries: dict[str, int] = {}
        """Domain -> index of its `MatchRule` in ``_rules``."""
        self._rules: list[MatchRule] = []
        self._rule_ids: dict[tuple[Action, str], int] = {}
        for entry in entries:
            self.add(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: MatchEntry) -> None:
        """Add an entry; an existing one for the same domain is kept if it is stronger."""
        domain = normalize(entry.domain)
        current = self._entries.get(domain)
        if current is not None and self._rules[current].action.strength > entry.action.strength:
            return
        self._entries[domain] = self._rule_id(entry.action, entry.app_id)

    def add_domains(self, domains: Iterable[str], action: Action, app_id: str = "") -> None:
        """Add many domains with the same action and app (a bulk load: one rule, no entry objects).

        Same semantics as calling `add` for each; a name that cannot be a domain raises ValueError.
        """
        entries = self._entries
        rules = self._rules
        rule_id = self._rule_id(action, app_id)
        strength = action.strength
        for raw in domains:
            domain = normalize(raw)
            current = entries.get(domain)
            if current is None or rules[current].action.strength <= strength:
                entries[domain] = rule_id

    def _rule_id(self, action: Action, app_id: str) -> int:
        key = (action, app_id)
        rule_id = self._rule_ids.get(key)
        if rule_id is None:
            rule_id = self._rule_ids[key] = len(self._rules)
            self._rules.append(MatchRule(action, app_id))
        return rule_id

    def remove(self, domain: str) -> None:
        """Forget the entry for a domain (no error if there is none)."""
        self._entries.pop(normalize(domain), None)

    def verdict(self, name: str) -> Verdict:
        """Decide a name that may not be normalised yet (mixed case, trailing dot, IDN)."""
        try:
            return self.verdict_normalized(normalize(name))
        except ValueError:
            return NOT_GOVERNED

    def verdict_normalized(self, name: str) -> Verdict:
        """Decide an already lower-case ASCII name without a trailing dot (the hot path)."""
        entries = self._entries
        while True:
            hit = entries.get(name)
            if hit is not None:
                rule = self._rules[hit]
                return _new_tuple(Verdict, (rule.action, name, rule.app_id))
            dot = name.find(".")
            if dot < 0:
                return NOT_GOVERNED
            name = name[dot + 1 :]
