"""Which indicators a device enforces, given its device groups (pure).

A device in groups G receives the indicators scoped to all devices and those scoped to any group
in G. For one domain it enforces a single entry:

* an indicator scoped to one of its groups beats an all-devices indicator (group policy is the
  more specific decision: "block ngrok, but only audit it for engineering");
* among indicators of the same rank, the strongest action wins:
  Allowed > Block > Warn > Alert > Audit.

The matcher then applies most-specific-domain-wins across domains (see `enforcer.decide.matcher`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from enforcer.decide.matcher import MatchEntry
from enforcer.models import ALL_DEVICES, Indicator


def in_scope(indicator: Indicator, groups: Collection[str]) -> bool:
    """Whether a device in `groups` receives this indicator."""
    return indicator.scope == ALL_DEVICES or indicator.scope in groups


def _rank(indicator: Indicator) -> tuple[int, int]:
    return (0 if indicator.scope == ALL_DEVICES else 1, indicator.action.strength)


def effective_indicators(
    indicators: Iterable[Indicator], groups: Collection[str]
) -> dict[str, Indicator]:
    """Per domain, the one indicator a device in `groups` enforces."""
    chosen: dict[str, Indicator] = {}
    for ind in indicators:
        if not in_scope(ind, groups):
            continue
        current = chosen.get(ind.value)
        if current is None or _rank(ind) > _rank(current):
            chosen[ind.value] = ind
    return chosen


def match_entries(indicators: Iterable[Indicator], groups: Collection[str]) -> list[MatchEntry]:
    """Matcher entries for a device in `groups`."""
    return [
        MatchEntry(ind.value, ind.action, ind.app_id)
        for ind in effective_indicators(indicators, groups).values()
    ]
