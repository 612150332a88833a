"""Defender for Endpoint sink: reconcile our indicators into a tenant's Indicators API.

For organisations that also run Defender: the same device-wide indicator set, enforced by
Defender's network protection as well as by our shim. Only indicators we own are ever touched:
ours carry ``Managed by Enforcer`` in their description (policy indicators already do; the sink
adds it to the others). An indicator someone else created for the same domain is left alone and
the domain is reported as skipped: import would otherwise overwrite it.

The documented limits are planned for rather than discovered:

* 15,000 active indicators per tenant. What the tenant's other owners hold is subtracted first;
  when the rest of the room is too small, names under one registrable domain are collapsed into
  that domain where no decision changes (`fit`), then the indicators are ranked by discovered
  traffic and risk and the lowest ranked are reported, one by one, as not fitting. Deletes run
  before imports, and imports go highest ranked first;
* 500 indicators per ``POST /api/indicators/import`` and per ``POST /api/indicators/BatchDelete``;
* 100 calls a minute and 1,500 an hour: calls are paced client-side (`CallBudget`, which keeps
  its calls in a state file, so that another process knows them); when the hour's calls are
  spent, the apply stops as a `TemporaryError` and keeps its progress, and the next run resumes
  where it stopped without reading the tenant again. A 429 is still honoured by waiting its
  ``Retry-After`` (bounded: a longer wait ends the run the same way);
* OAuth2 client credentials; an expired token (401) is refreshed once, then the call repeated.

Action mapping: Block, Warn, Audit and Allowed are Defender's own; Alert is Defender's legacy
value, sent as Audit with ``generateAlert`` (how Defender alerts on domains today).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import email.utils
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from enforcer.config import Settings
from enforcer.decide.expand import MANAGED_MARKER
from enforcer.errors import TemporaryError
from enforcer.models import INDICATOR_TYPE_DOMAIN, Action, Indicator
from enforcer.plan.model import ChangeAction
from enforcer.sinks.base import (
    Ranking,
    SinkChange,
    SinkError,
    SinkPlan,
    SinkResult,
    device_wide,
    reason,
)

NAME = "defender"
LIMITED = True
"""The tenant holds at most `defender_max_indicators`: `plan` wants a `Ranking`."""
_ACTIONS = {
    Action.BLOCK: "Block",
    Action.WARN: "Warn",
    Action.AUDIT: "Audit",
    Action.ALERT: "Audit",
    Action.ALLOWED: "Allowed",
}
_COMPARED = (
    "action", "severity", "title", "description", "expirationTime", "generateAlert", "application"
)  # fmt: skip
_MAX_PAGES = 1000
_HOUR = 3600.0
_MINUTE = 60.0


class DefenderError(SinkError):
    """The tenant refused a request for a reason a retry cannot fix (400, 403, a bad secret)."""


class BudgetExhausted(TemporaryError):
    """The API calls of the last hour are spent: the apply stops, and the next run resumes."""


class Clock:
    """Wall-clock time and sleeping (a test passes one that only pretends to sleep)."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()


@dataclass(frozen=True)
class Work:
    """What `apply` sends, in order: ids to delete, then indicators to import (best ranked first).

    `deletes_done` and `imports_done` are where a resumed apply starts.
    """

    deletes: tuple[tuple[str, str], ...]
    """(id, indicatorValue) of the tenant indicators to delete."""
    imports: tuple[dict[str, Any], ...]
    digest: str = ""
    """Identifies the desired set the work was planned for (see `desired_digest`)."""
    deletes_done: int = 0
    imports_done: int = 0

    @property
    def delete_ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self.deletes)


def to_defender(ind: Indicator) -> dict[str, Any]:
    """Our indicator as the import endpoint wants it, marked as ours."""
    description = ind.description or f"Enforcer {ind.action.policy_word} {ind.value}"
    if MANAGED_MARKER not in description:
        description = f"{description} ({MANAGED_MARKER})"
    return {
        "indicatorValue": ind.value,
        "indicatorType": INDICATOR_TYPE_DOMAIN,
        "action": _ACTIONS[ind.action],
        "severity": ind.severity.value,
        "title": ind.title or f"Enforcer: {ind.value}",
        "description": description,
        "expirationTime": _utc_text(ind.expiration),
        "generateAlert": ind.generate_alert or ind.action is Action.ALERT,
        "application": ind.app_id or "Enforcer",
    }


def _utc_text(value: dt.datetime | str | None) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owned(remote: Mapping[str, Any]) -> bool:
    """Whether a tenant indicator is ours: a domain indicator carrying the marker."""
    text = f"{remote.get('title') or ''} {remote.get('description') or ''}"
    return remote.get("indicatorType") == INDICATOR_TYPE_DOMAIN and MANAGED_MARKER in text


def _comparable(data: Mapping[str, Any]) -> tuple[Any, ...]:
    values = dict(data)
    values["expirationTime"] = _utc_text(values.get("expirationTime"))
    values["generateAlert"] = bool(values.get("generateAlert"))
    return tuple(values.get(name) or None for name in _COMPARED)


def _summary(data: Mapping[str, Any]) -> str:
    return f"{data.get('action')}/{data.get('severity')}"


# --- the tenant limit --------------------------------------------------------------------------


_psl: Any = None


def registrable_domain(name: str) -> str:
    """The registrable domain of a name by the Public Suffix List (the name itself when none)."""
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList

        _psl = PublicSuffixList()
    return str(_psl.privatesuffix(name) or name)


@dataclass(frozen=True)
class Fit:
    """What the tenant gets when it has room for `room` indicators (`fit`'s answer)."""

    chosen: tuple[Indicator, ...]
    """The indicators sent, best ranked first."""
    collapsed: tuple[tuple[str, tuple[str, ...]], ...]
    """(registrable domain, the names it replaces) for each collapse."""
    overflow: tuple[tuple[str, str], ...]
    """(name, why) of each indicator that does not fit, best ranked first."""


def _collapse_key(ind: Indicator) -> tuple[Any, ...] | None:
    """What names must share to be collapsed into one; None when the indicator never is."""
    if not ind.app_id or ind.action is Action.ALLOWED:
        return None
    return (ind.app_id, ind.action, ind.severity, ind.generate_alert, ind.expiration)


def _collapsible(
    wanted: Mapping[str, Indicator], everything: Iterable[Indicator]
) -> list[tuple[str, list[str]]]:
    """(registrable domain, names) of the groups that may become their registrable domain.

    A group may when it has two names or more, all of one app with the same action, severity,
    alert and expiry, and no indicator of any scope under that domain says anything else (a
    device-group exception, another app): then blocking the whole domain in the tenant changes
    no decision the policy made, it only covers the app's other names too.
    """
    groups: dict[str, list[str]] = collections.defaultdict(list)
    domains: dict[str, str] = {}  # the suffix list is slow: each name is looked up once
    for value in wanted:
        domains[value] = domain = registrable_domain(value)
        groups[domain].append(value)
    keys: dict[str, set[tuple[Any, ...] | None]] = collections.defaultdict(set)
    for ind in everything:
        domain = domains.get(ind.value) or registrable_domain(ind.value)
        if len(groups.get(domain, ())) >= 2:
            keys[domain].add(_collapse_key(ind))
    out = []
    for domain, names in groups.items():
        if len(names) >= 2 and len(keys[domain]) == 1 and None not in keys[domain]:
            out.append((domain, sorted(names)))
    out.sort(key=lambda group: (-len(group[1]), group[0]))
    return out


def _collapsed_indicator(domain: str, names: Sequence[str], first: Indicator) -> Indicator:
    return first._replace(
        value=domain,
        title=f"Enforcer: {domain}",
        description=(
            f"{first.app_id}: {domain} stands for {len(names)} names of the app, collapsed to fit "
            f"the tenant's indicator limit ({MANAGED_MARKER})"
        ),
    )


def fit(
    wanted: Mapping[str, Indicator],
    room: int,
    *,
    everything: Iterable[Indicator] = (),
    ranking: Ranking | None = None,
    collapse: bool = True,
    held: Container[str] = (),
    limit_text: str = "",
) -> Fit:
    """The indicators a tenant with room for `room` gets, and what does not fit (pure).

    First, while there are more than `room`, the largest collapsible groups (`_collapsible`)
    become their registrable domain, unless another owner `held` that domain. Then the indicators are ranked: Allowed exceptions first
    (few, and dropping one would block what the policy allows), then by requests seen in the
    ranking's window, then by risk score, then by name; the first `room` are chosen.
    """
    ranking = ranking or Ranking()
    current = dict(wanted)
    collapsed: list[tuple[str, tuple[str, ...]]] = []
    if collapse and len(current) > room:
        for domain, names in _collapsible(wanted, everything):
            if len(current) <= room:
                break
            if domain in held:  # another owner's indicator: importing it would overwrite theirs
                continue
            first = current[names[0]]
            for name in names:
                del current[name]
            current[domain] = _collapsed_indicator(domain, names, first)
            collapsed.append((domain, tuple(names)))

    def usage(ind: Indicator) -> tuple[int, float]:
        # Only a name of no app is ranked by its registrable domain's traffic.
        return ranking.of(ind, "" if ind.app_id else registrable_domain(ind.value))

    def rank(ind: Indicator) -> tuple[Any, ...]:
        requests, risk = usage(ind)
        return (ind.action is not Action.ALLOWED, -requests, -risk, ind.value)

    ordered = sorted(current.values(), key=rank)
    room = max(room, 0)
    overflow = []
    for position, ind in enumerate(ordered[room:], start=room + 1):
        requests, risk = usage(ind)
        overflow.append(
            (
                ind.value,
                f"does not fit{limit_text}: rank {position:,}, {requests:,} requests in "
                f"{ranking.days} days, risk {risk:.1f}",
            )
        )
    collapsed.sort()
    return Fit(tuple(ordered[:room]), tuple(collapsed), tuple(overflow))


# --- plan and apply ----------------------------------------------------------------------------


def desired_digest(desired: Iterable[Indicator], settings: Settings) -> str:
    """A digest of what the tenant should get: an interrupted apply is resumed only for it."""
    digest = hashlib.sha256(
        f"{settings.defender_max_indicators}\0{settings.defender_collapse}\0".encode()
    )
    for text in sorted(ind.canonical() for ind in device_wide(desired).values()):
        digest.update(text.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def diff(
    desired: Iterable[Indicator],
    remote: Iterable[Mapping[str, Any]],
    revision: int,
    settings: Settings,
    *,
    ranking: Ranking | None = None,
    digest: str = "",
) -> SinkPlan:
    """The changes that make the tenant's Enforcer-owned indicators match `desired`, within the
    tenant's limit (pure)."""
    desired = list(desired)
    ours: dict[str, Mapping[str, Any]] = {}
    theirs: dict[str, Mapping[str, Any]] = {}
    others = 0
    deletes: list[tuple[str, str]] = []
    changes: list[SinkChange] = []
    for item in remote:
        value = str(item.get("indicatorValue", "")).lower()
        if not owned(item):
            others += 1
            if item.get("indicatorType") == INDICATOR_TYPE_DOMAIN:
                theirs[value] = item
        elif value in ours:  # a duplicate of one of ours: remove it
            deletes.append((str(item["id"]), value))
            changes.append(
                SinkChange(ChangeAction.DELETE, value, _summary(item), None, "a duplicate")
            )
        else:
            ours[value] = item
    skipped: list[tuple[str, str]] = []
    wanted: dict[str, Indicator] = {}
    for value, ind in sorted(device_wide(desired).items()):
        if value in theirs:
            other = theirs[value]
            skipped.append(
                (value, f"held by indicator {other.get('id')} that Enforcer does not own")
            )
        else:
            wanted[value] = ind
    limit = settings.defender_max_indicators
    room = limit - others
    fitted = fit(
        wanted,
        room,
        everything=desired,
        ranking=ranking,
        collapse=settings.defender_collapse,
        held=theirs,
        limit_text=f" the tenant's limit of {limit:,} indicators",
    )
    chosen = {ind.value: ind for ind in fitted.chosen}
    why_gone = dict.fromkeys(wanted, "does not fit the tenant's limit")
    for domain, names in fitted.collapsed:
        why_gone.update(dict.fromkeys(names, f"collapsed into {domain}"))
    for value, item in sorted(ours.items()):
        if value not in chosen:
            deletes.append((str(item["id"]), value))
            why = why_gone.get(value, "no longer in the store")
            changes.append(SinkChange(ChangeAction.DELETE, value, _summary(item), None, why))
    imports: list[dict[str, Any]] = []
    for ind in fitted.chosen:
        data = to_defender(ind)
        current = ours.get(ind.value)
        if current is None:
            change = SinkChange(ChangeAction.CREATE, ind.value, None, _summary(data), reason(ind))
        elif _comparable(current) != _comparable(data):
            change = SinkChange(
                ChangeAction.UPDATE, ind.value, _summary(current), _summary(data), reason(ind)
            )
        else:
            continue
        changes.append(change)
        imports.append(data)
    changes.sort(key=lambda c: (c.name, c.action))
    return SinkPlan(
        sink=NAME,
        target=settings.defender_tenant_url,
        revision=revision,
        changes=tuple(changes),
        entries=len(fitted.chosen),
        skipped=tuple(skipped),
        overflow=fitted.overflow,
        notes=_limit_notes(fitted, limit, others, len(wanted), ranking or Ranking()),
        payload=Work(tuple(deletes), tuple(imports), digest),
    )


def _limit_notes(
    fitted: Fit, limit: int, others: int, wanted: int, ranking: Ranking
) -> tuple[str, ...]:
    if not fitted.collapsed and not fitted.overflow:
        return ()
    room = max(limit - others, 0)
    notes = [
        f"The tenant holds at most {limit:,} indicators; {others:,} are not Enforcer's, which "
        f"leaves room for {room:,} of the {wanted:,} wanted."
    ]
    if fitted.collapsed:
        names = sum(len(n) for _, n in fitted.collapsed)
        notes.append(
            f"{names:,} names were collapsed into {len(fitted.collapsed):,} registrable domains "
            "(same app and action, nothing else under them)."
        )
    if fitted.overflow:
        notes.append(
            f"{len(fitted.overflow):,} indicators do not fit (ranked by requests in the last "
            f"{ranking.days} days, then risk); each is listed with `!`."
        )
    return tuple(notes)


def plan(
    desired: Iterable[Indicator],
    revision: int,
    settings: Settings,
    *,
    ranking: Ranking | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> SinkPlan:
    """The rest of an interrupted apply of the same desired set, when there is one; otherwise
    read the tenant's indicators and diff them against `desired`."""
    desired = list(desired)
    digest = desired_digest(desired, settings)
    state = State(settings)
    resumed = state.resumed_plan(digest, revision)
    if resumed is not None:
        return resumed
    with DefenderClient(settings, clock=clock, state=state) as client:
        remote = client.list_indicators()
    return diff(desired, remote, revision, settings, ranking=ranking, digest=digest)


def apply(plan: SinkPlan, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> SinkResult:
    """Delete, then import in batches (so the tenant never passes its limit on the way).

    The progress is kept after each call: an apply interrupted by the hourly call budget, an
    error or a stopped process is resumed by the next plan of the same desired set.
    """
    work: Work = plan.payload
    counts = plan.counts
    size = settings.defender_batch_size
    failed: list[tuple[str, str]] = []
    state = State(settings)
    if work.deletes_done or work.imports_done:
        state.progress = {
            "digest": work.digest,
            "deletes": work.deletes_done,
            "imports": work.imports_done,
        }
    elif work.deletes or work.imports:
        state.start(plan, work)
    with DefenderClient(settings, clock=clock, state=state) as client:
        deletes = work.delete_ids
        for start in range(work.deletes_done, len(deletes), size):
            client.batch_delete(deletes[start : start + size])
            state.advance(deletes=min(start + size, len(deletes)))
        for start in range(work.imports_done, len(work.imports), size):
            failed += client.import_indicators(work.imports[start : start + size])
            state.advance(imports=min(start + size, len(work.imports)))
    state.finish()
    return SinkResult(
        sink=NAME,
        target=plan.target,
        revision=plan.revision,
        created=counts[ChangeAction.CREATE],
        updated=counts[ChangeAction.UPDATE],
        deleted=counts[ChangeAction.DELETE],
        failed=tuple(failed),
        overflow=len(plan.overflow),
    )


# --- state kept between runs ------------------------------------------------------------------


def _state_dir(settings: Settings) -> Path:
    if settings.defender_state_dir is not None:
        return settings.defender_state_dir
    import platformdirs

    return Path(platformdirs.user_state_dir("enforcer", appauthor=False))


def _write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON (readers see the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> Any:
    """The file's JSON; None when it is missing or damaged (then the sink starts afresh: a plan
    reads the tenant again, and a 429 still stops a run that the lost call history lets
    through)."""
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    except OSError as exc:
        raise SinkError(f"sink defender: cannot read its state file {path}: {exc}") from exc


class State:
    """The sink's files for one tenant: the API calls of the last hour, and an unfinished apply
    (its work, written once, and how far it got, written after each call)."""

    def __init__(self, settings: Settings) -> None:
        directory = _state_dir(settings)
        tenant = settings.defender_tenant_url.rstrip("/")
        key = hashlib.sha256(tenant.encode()).hexdigest()[:16]
        self.path = directory / f"defender-{key}.json"
        self.work_path = directory / f"defender-{key}-work.json"
        data = _read_json(self.path)
        data = data if isinstance(data, dict) else {}
        calls = data.get("calls")
        self.calls: list[float] = [
            float(c)
            for c in (calls if isinstance(calls, list) else [])
            if isinstance(c, (int, float))
        ]
        progress = data.get("progress")
        self.progress: dict[str, Any] | None = progress if isinstance(progress, dict) else None

    def save(self) -> None:
        _write_json(self.path, {"calls": self.calls, "progress": self.progress})

    def start(self, plan: SinkPlan, work: Work) -> None:
        changes = [[c.action.name, c.name, c.before, c.after, c.reason] for c in plan.changes]
        _write_json(
            self.work_path,
            {
                "digest": work.digest,
                "revision": plan.revision,
                "target": plan.target,
                "deletes": work.deletes,
                "imports": work.imports,
                "changes": changes,
                "entries": plan.entries,
                "skipped": plan.skipped,
                "overflow": plan.overflow,
                "notes": plan.notes,
            },
        )
        self.progress = {"digest": work.digest, "deletes": 0, "imports": 0}
        self.save()

    def advance(self, *, deletes: int | None = None, imports: int | None = None) -> None:
        if self.progress is None:
            return
        if deletes is not None:
            self.progress["deletes"] = deletes
        if imports is not None:
            self.progress["imports"] = imports
        self.save()

    def finish(self) -> None:
        if self.progress is None:
            return
        self.progress = None
        self.save()
        with contextlib.suppress(FileNotFoundError):
            self.work_path.unlink()

    def resumed_plan(self, digest: str, revision: int) -> SinkPlan | None:
        """The rest of the unfinished apply of `digest`, or None when there is none."""
        progress = self.progress
        if progress is None or progress.get("digest") != digest:
            return None
        data = _read_json(self.work_path)
        if not isinstance(data, dict) or data.get("digest") != digest:
            return None
        deletes = tuple((str(i), str(n)) for i, n in data["deletes"])
        imports = tuple(data["imports"])
        done_deletes, done_imports = int(progress["deletes"]), int(progress["imports"])
        left = {("DELETE", n) for _, n in deletes[done_deletes:]}
        left |= {
            (a, d["indicatorValue"]) for d in imports[done_imports:] for a in ("CREATE", "UPDATE")
        }
        changes = tuple(
            SinkChange(ChangeAction[a], n, b, af, r)
            for a, n, b, af, r in data["changes"]
            if (a, n) in left
        )
        note = (
            f"Resuming the apply interrupted at revision {data['revision']}: "
            f"{len(deletes) - done_deletes:,} of {len(deletes):,} deletes and "
            f"{len(imports) - done_imports:,} of {len(imports):,} imports are left "
            "(the tenant is not read again)."
        )
        return SinkPlan(
            sink=NAME,
            target=str(data["target"]),
            revision=revision,
            changes=changes,
            entries=int(data["entries"]),
            skipped=tuple((str(n), str(w)) for n, w in data["skipped"]),
            overflow=tuple((str(n), str(w)) for n, w in data["overflow"]),
            notes=(note, *map(str, data["notes"])),
            payload=Work(deletes, imports, digest, done_deletes, done_imports),
        )


class CallBudget:
    """At most `defender_calls_per_minute` calls in any minute and `defender_calls_per_hour` in
    any hour, counting the calls other runs made (they are kept in the `State`)."""

    def __init__(self, settings: Settings, state: State, clock: Clock) -> None:
        self.per_minute = settings.defender_calls_per_minute
        self.per_hour = settings.defender_calls_per_hour
        self.max_wait = settings.defender_max_retry_after
        self.state = state
        self.clock = clock

    def take(self) -> None:
        """Wait until one more call is within both limits, then count it; `BudgetExhausted`
        when that wait would be longer than the sink waits in place."""
        calls = self.state.calls
        now = self.clock.now()
        calls[:] = [c for c in calls if now - c < _HOUR]
        if len(calls) >= self.per_hour:
            wait = calls[-self.per_hour] + _HOUR - now
            if wait > self.max_wait:
                when = dt.datetime.fromtimestamp(now + wait, dt.UTC).strftime("%H:%M:%S UTC")
                raise BudgetExhausted(
                    f"sink defender: the {self.per_hour:,} API calls of the last hour are spent; "
                    f"the next is possible at {when}, and the next run resumes where this one "
                    "stopped"
                )
            self.clock.sleep(wait)
            now = self.clock.now()
        if len(calls) >= self.per_minute and now - calls[-self.per_minute] < _MINUTE:
            self.clock.sleep(calls[-self.per_minute] + _MINUTE - now)
            now = self.clock.now()
        calls.append(now)
        self.state.save()


class DefenderClient:
    """The few Indicators API calls the sink makes, with token handling, pacing and retries."""

    def __init__(
        self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, state: State | None = None
    ) -> None:
        if not (settings.defender_token_url and settings.defender_client_id):
            raise SinkError(
                "sink defender: set ENFORCER_DEFENDER_TOKEN_URL, ENFORCER_DEFENDER_CLIENT_ID "
                "and ENFORCER_DEFENDER_CLIENT_SECRET"
            )
        self.settings = settings
        self.base = settings.defender_tenant_url.rstrip("/")
        self.http = httpx.Client(timeout=settings.defender_timeout)
        self.clock = clock
        self.budget = CallBudget(settings, state or State(settings), clock)
        self._token: str | None = None
        self._token_until = 0.0

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    # --- the API -----------------------------------------------------------------------------

    def list_indicators(self) -> list[dict[str, Any]]:
        """Every indicator of the tenant, following ``@odata.nextLink`` pages."""
        url: str | None = f"{self.base}/api/indicators"
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                return items
            data = self.call("GET", url).json()
            items += data.get("value", [])
            url = data.get("@odata.nextLink")
            if url is not None and _origin(url) != _origin(self.base):
                raise DefenderError(f"sink defender: refusing a next page on another host: {url}")
        raise DefenderError(f"sink defender: more than {_MAX_PAGES} pages of indicators")

    def import_indicators(self, batch: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
        """Create or update one batch; the (value, reason) of each indicator the tenant refused."""
        response = self.call(
            "POST", f"{self.base}/api/indicators/import", json={"Indicators": list(batch)}
        )
        return [
            (str(r.get("indicator", "")), str(r.get("failureReason") or "refused"))
            for r in response.json().get("value", [])
            if r.get("isFailed")
        ]

    def batch_delete(self, ids: Iterable[str]) -> None:
        self.call(
            "POST", f"{self.base}/api/indicators/BatchDelete", json={"IndicatorIds": list(ids)}
        )

    # --- plumbing ----------------------------------------------------------------------------

    def call(self, method: str, url: str, json: Any = None) -> httpx.Response:
        """One API call: paced, authorised, retried on 429 / 5xx / network errors (bounded)."""
        settings = self.settings
        refreshed = False
        attempt = 0
        while True:
            self.budget.take()
            try:
                response = self.http.request(
                    method, url, json=json, headers={"Authorization": f"Bearer {self.token()}"}
                )
            except httpx.TransportError as exc:
                wait = self._backoff(attempt, f"{method} {_path(url)}: {exc}")
                attempt += 1
                self.clock.sleep(wait)
                continue
            status = response.status_code
            if status == 401 and not refreshed:
                self._token = None  # expired or revoked: one fresh token, then the same call
                refreshed = True
                continue
            if status == 429:
                wait = _retry_after(response) or 2.0**attempt
                if (
                    wait > settings.defender_max_retry_after
                    or attempt >= settings.defender_max_retries
                ):
                    raise TemporaryError(
                        f"sink defender: throttled (429) on {method} {_path(url)}; "
                        f"retry after {wait:.0f} s"
                    )
                attempt += 1
                self.clock.sleep(wait)
                continue
            if status >= 500:
                wait = self._backoff(attempt, f"{method} {_path(url)}: HTTP {status}")
                attempt += 1
                self.clock.sleep(wait)
                continue
            if status >= 400:
                raise DefenderError(
                    f"sink defender: {method} {_path(url)}: HTTP {status}: {_error_text(response)}"
                )
            return response

    def _backoff(self, attempt: int, what: str) -> float:
        if attempt >= self.settings.defender_max_retries:
            raise TemporaryError(f"sink defender: {what} (gave up after {attempt} retries)")
        return float(min(2.0**attempt, self.settings.defender_max_retry_after))

    def token(self) -> str:
        """A bearer token from the client-credentials grant, reused until shortly before expiry."""
        if self._token is not None and self.clock.now() < self._token_until:
            return self._token
        settings = self.settings
        secret = settings.defender_client_secret
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.defender_client_id,
            "client_secret": secret.get_secret_value() if secret else "",
            "scope": settings.defender_scope,
        }
        try:
            response = self.http.post(settings.defender_token_url, data=form)
        except httpx.TransportError as exc:
            raise TemporaryError(f"sink defender: token endpoint: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TemporaryError(f"sink defender: token endpoint: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DefenderError(
                f"sink defender: the token endpoint refused the client credentials: "
                f"HTTP {response.status_code}: {_error_text(response)}"
            )
        data = response.json()
        self._token = str(data["access_token"])
        self._token_until = self.clock.now() + max(float(data.get("expires_in", 3600)) - 60.0, 0.0)
        return self._token


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def _error_text(response: httpx.Response) -> str:
    """The message of an OData or OAuth2 error body, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        if "error_description" in body:
            return f"{error}: {body['error_description']}"
        if isinstance(error, str):
            return error
    return str(body)[:300]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _path(url: str) -> str:
    return urlsplit(url).path
