"""The sink interface: a desired indicator set and a revision in, what was changed out.

A sink pushes the store's indicators to an enforcement point Enforcer does not run itself (a
resolver's response policy zone, a hosts file, dnsmasq, a Defender for Endpoint tenant). Every sink
module has the same two functions, so that adding one is one file and one name in `SINKS`
(`get_sink` finds a sink's module by its name):

* ``plan(desired, revision, settings, *, ranking=None) -> SinkPlan``: what would change, as data
  (reading the target where it must: the existing file, the tenant's indicators); a target with
  less room than the store has indicators keeps the first by `ranking` and reports the rest;
* ``apply(plan, settings) -> SinkResult``: make the change and say what was done.

Like the store's `Plan`, a `SinkPlan` is rendered by the caller; its reasons explain, never drive.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from enforcer.errors import PermanentError
from enforcer.models import ALL_DEVICES, Action, Indicator
from enforcer.plan.model import ChangeAction
from enforcer.sinks import SINKS

if TYPE_CHECKING:
    from enforcer.config import Settings


class SinkError(PermanentError):
    """A sink refused its target or its input; retrying the same input cannot help."""


class SinkChange(NamedTuple):
    """One entry of the target to create, update or delete.

    `before` and `after` are short texts in the target's own terms ("NXDOMAIN", "passthru",
    "Block/High"), so one renderer serves every sink.
    """

    action: ChangeAction
    name: str
    before: str | None
    after: str | None
    reason: str = ""


@dataclass(frozen=True)
class SinkPlan:
    """What one sink would change in its target to reflect the store at `revision`."""

    sink: str
    target: str
    """Where the sink writes: a file path or a tenant URL."""
    revision: int
    changes: tuple[SinkChange, ...]
    entries: int = 0
    """How many entries the target holds once applied."""
    rewrite: bool = False
    """The target must be written even without entry changes (a new file, a new serial)."""
    skipped: tuple[tuple[str, str], ...] = ()
    """(name, why) of indicators the sink leaves out, such as names another owner holds."""
    overflow: tuple[tuple[str, str], ...] = ()
    """(name, why) of indicators the target has no room for (Defender's tenant limit)."""
    notes: tuple[str, ...] = ()
    """Lines for people about the plan as a whole (a limit applied, an apply resumed)."""
    payload: Any = field(default=None, repr=False, compare=False)
    """What the sink's own `apply` needs (the rendered entries, the ids to delete)."""

    @property
    def counts(self) -> dict[ChangeAction, int]:
        out = dict.fromkeys(ChangeAction, 0)
        for change in self.changes:
            out[change.action] += 1
        return out

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or self.rewrite

    def summary(self) -> str:
        c = self.counts
        return (
            f"Plan: {c[ChangeAction.CREATE]} to add, {c[ChangeAction.UPDATE]} to change, "
            f"{c[ChangeAction.DELETE]} to destroy."
        )


@dataclass(frozen=True)
class SinkResult:
    """What a sink run did (or the error that stopped it: the target keeps its last good state)."""

    sink: str
    target: str
    revision: int
    created: int = 0
    updated: int = 0
    deleted: int = 0
    written: bool = False
    """A file sink replaced its file; a reload hook, when configured, ran after it."""
    failed: tuple[tuple[str, str], ...] = ()
    """(name, reason) of entries the target refused one by one (Defender's per-indicator results)."""
    error: str = ""
    overflow: int = 0
    """Indicators the target had no room for (listed in the plan's `overflow`)."""

    @property
    def ok(self) -> bool:
        return not self.error and not self.failed


@dataclass(frozen=True)
class Ranking:
    """What a target with less room than the store has indicators keeps first.

    Built by the pipeline from Cloud Discovery's roll-ups and the catalog: `requests` seen in the
    last `days` days by app id (and by registrable domain for names of no app), `risk` score by
    app id. A name nobody visits changes nothing on the network, so traffic ranks first.
    """

    requests: Mapping[str, int] = field(default_factory=dict)
    risk: Mapping[str, float] = field(default_factory=dict)
    days: int = 30

    def of(self, ind: Indicator, registrable: str) -> tuple[int, float]:
        """(requests, risk) of an indicator; 0 when nothing is known."""
        if ind.app_id:
            return self.requests.get(ind.app_id, 0), self.risk.get(ind.app_id, 0.0)
        return self.requests.get(registrable, 0), 0.0


class Sink(Protocol):
    """A sink module (see the module docstring).

    A module whose target has a size limit sets ``LIMITED = True``: the pipeline then passes it
    a `Ranking` (reading it costs a query over the discovery roll-ups).
    """

    def plan(
        self,
        desired: Iterable[Indicator],
        revision: int,
        settings: Settings,
        *,
        ranking: Ranking | None = None,
    ) -> SinkPlan: ...

    def apply(self, plan: SinkPlan, settings: Settings) -> SinkResult: ...


def get_sink(name: str) -> Sink:
    """The sink module called `name` (imported now), or a `SinkError` listing the known ones."""
    if name not in SINKS:
        raise SinkError(f"unknown sink {name!r}; known sinks: {', '.join(SINKS)}")
    return cast(Sink, importlib.import_module(f"enforcer.sinks.{name}"))


def device_wide(desired: Iterable[Indicator]) -> dict[str, Indicator]:
    """Per domain, the indicator that applies to every device (a resolver or tenant serves them all).

    Group-scoped indicators are left out: a resolver cannot tell which device group asks. Among
    indicators for the same domain the strongest action wins, as in `enforcer.decide.scope` (inlined:
    this loop runs over every indicator of the store).
    """
    chosen: dict[str, Indicator] = {}
    get = chosen.get
    for ind in desired:
        if ind.scope != ALL_DEVICES:
            continue
        current = get(ind.value)
        if current is None or ind.action.strength > current.action.strength:
            chosen[ind.value] = ind
    return chosen


def reason(ind: Indicator) -> str:
    """Why an entry is there, for plan output: the action and the app (or the allow entry)."""
    origin = ind.app_id or ("allow entry" if ind.action is Action.ALLOWED else "manual")
    return f"{ind.action.value} ({origin})"
