"""Records -> usage aggregates (pure, in memory, bounded).

The hot loop does one dictionary update per record, keyed by the finest grain the reports need
(hour, app or unrecognised domain, device, user, address); everything else (per app, per device,
per user, per day) is derived from those keys when the batch is flushed. The keys are far fewer
than the records (a million-line log has some hundred thousand), and `full` tells the caller to
flush early when a file has more than `max_keys`, so memory stays bounded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from enforcer.discovery.attribute import Attributor
from enforcer.discovery.identity import UserNames
from enforcer.discovery.records import BadLine, Record
from enforcer.gcpause import paused_gc
from enforcer.rollup import AppDay, DeviceDay, Rollup, Usage, UserDay, UserUpload

FineKey = tuple[str, str, str, str]
"""(attribution, device, user, address) within an hour; see `Aggregator._who`."""

_DOMAIN = "\x00"
"""An unrecognised domain's attribution is this prefix + the domain (no app id starts with it)."""

FIRST_APP_ID = "\x01"
"""Attributions at or after this are catalog app ids; "" (no host) and `_DOMAIN` + domain sort
before it. `who >= FIRST_APP_ID` is how the hot loops tell an app from a domain: one string
comparison, against a local bound to this constant."""

Acc = list[float]
"""[transactions, bytes_up, bytes_down, blocked, first_seen, last_seen]."""

Row = list[Any]
"""An `Acc` followed by the sets of distinct names a derived table keeps (see `rollup`)."""


def _bump(table: dict[Any, Row], key: Any, acc: Acc, sets: int = 0) -> Row:
    """Add six counters into `table[key]` (created on first use, with `sets` empty sets)."""
    row = table.get(key)
    if row is None:
        row = table[key] = [*acc[:6], *(set() for _ in range(sets))]
        return row
    row[0] += acc[0]
    row[1] += acc[1]
    row[2] += acc[2]
    row[3] += acc[3]
    if acc[4] < row[4]:
        row[4] = acc[4]
    if acc[5] > row[5]:
        row[5] = acc[5]
    return row


def _span(
    table: dict[tuple[str, str], tuple[float, float]],
    key: tuple[str, str],
    first: float,
    last: float,
) -> None:
    """Widen `table[key]`'s (first seen, last seen) to include [first, last]."""
    seen = table.get(key)
    table[key] = (first, last) if seen is None else (min(seen[0], first), max(seen[1], last))


def device_sources(
    events: Iterable[Any], machines: Mapping[str, str]
) -> dict[tuple[str, str], tuple[float, float]]:
    """(machine, ``device ID``) -> (first seen, last seen) of some devices' events (with
    `device_id` and `time`), named as `machines` names them (by id when it does not)."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for e in events:
        t = e.time.timestamp()
        _span(out, (machines.get(e.device_id, e.device_id), f"device {e.device_id}"), t, t)
    return out


def _usage(acc: Acc) -> Usage:
    return Usage(int(acc[0]), int(acc[1]), int(acc[2]), int(acc[3]), acc[4], acc[5])


class Aggregator:
    """Accumulates records; `rollup()` turns them into per-app/device/user/day aggregates."""

    def __init__(
        self,
        attributor: Attributor,
        *,
        max_keys: int = 200_000,
        users: UserNames | None = None,
        source: str | None = "logs",
    ) -> None:
        self.attributor = attributor
        self.max_keys = max_keys
        self.users = users or UserNames()
        """Raw user name -> the user reports show, applied in `rollup` (per key, not per line)."""
        self.source = source
        """What the machines of these records are seen through (`Rollup.sources`); None: the
        caller fills the sources in (the continuous report knows each event's device)."""
        self.days: dict[int, dict[FineKey, Acc]] = {}
        """day -> (attribution, device, user, address) -> counters."""
        self.hours: dict[int, dict[str, list[int]]] = {}
        """hour -> app id -> [transactions, bytes_up, bytes_down, blocked], for catalog apps
        only (`FIRST_APP_ID` tells them apart)."""
        self.keys = 0
        """Entries in `days` and `hours`, what `max_keys` bounds."""
        self._hosts: dict[str, str] = {}
        self._split: dict[str, tuple[str, str]] = {"": ("", "")}
        self.records = 0
        self.without_host = 0
        self.attributed = 0
        self.unrecognised = 0

    @property
    def full(self) -> bool:
        return self.keys >= self.max_keys

    def add_all(
        self,
        records: Iterable[Record | BadLine],
        *,
        on_bad: Callable[[BadLine], None] | None = None,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        """The hot loop: a cached attribution and two dict probes per record.

        Bad lines (straight from a parser) go to `on_bad`; when the accumulator holds `max_keys`
        keys, `on_full` is called (to merge `rollup()` into the store) and accumulation goes on.

        Why it is shaped so (benchmarks/ingest.py, a million Squid lines): the fine key is per
        *day*, not per hour, because a device reaches the same app hour after hour (58,000 day
        keys against 283,000 hour keys), and everything `rollup` derives costs per key; only the
        hourly app totals need the hour, and they live in a small dict per hour keyed by the
        attribution alone. Logs come in time order, so the hour and day dicts are looked up
        again only when the hour changes. The cyclic garbage collector is paused meanwhile
        (`paused_gc`): nothing here makes cycles, and its passes over the growing accumulator
        cost a fifth of the time.
        """
        hosts = self._hosts
        record_type = Record
        first_app = FIRST_APP_ID
        max_keys = self.max_keys
        count = 0
        keys = self.keys
        lo = hi = 0.0
        fine: dict[FineKey, Acc] = {}
        hourly: dict[str, list[int]] = {}
        with paused_gc():
            for r in records:
                if type(r) is not record_type:
                    if on_bad is not None:
                        on_bad(r)  # type: ignore[arg-type]
                    continue
                # One unpack instead of ten attribute reads: this loop runs once per log line.
                t, host, ip, user, device, _dip, _dport, up, down, action = r
                if not lo <= t < hi:  # another hour (or `max_keys` reached)
                    lo, hi, fine, hourly, keys = self._window(t, keys, on_full)
                who = hosts.get(host)
                if who is None:
                    who = self._who(host)
                blocked = 1 if action == "blocked" else 0
                key = (who, device or ip, user, ip)
                acc = fine.get(key)
                if acc is None:
                    fine[key] = [1, up, down, blocked, t, t]
                    keys += 1
                    if keys >= max_keys:
                        lo = hi = 0.0  # makes the next record check `on_full`
                else:
                    acc[0] += 1
                    acc[1] += up
                    acc[2] += down
                    acc[3] += blocked
                    if t < acc[4]:
                        acc[4] = t
                    elif t > acc[5]:
                        acc[5] = t
                if who >= first_app:  # a catalog app: hourly totals
                    total = hourly.get(who)
                    if total is None:
                        hourly[who] = [1, up, down, blocked]
                        keys += 1
                    else:
                        total[0] += 1
                        total[1] += up
                        total[2] += down
                        total[3] += blocked
                count += 1
        self.keys = keys
        self.records += count

    def _window(
        self, t: float, keys: int, on_full: Callable[[], None] | None
    ) -> tuple[float, float, dict[FineKey, Acc], dict[str, list[int]], int]:
        """For a hot loop whose record at `t` is outside its current hour, or that holds `keys`
        keys: flush first when that is `max_keys` (and there is `on_full`), then return the
        hour's bounds, the day's and the hour's dicts, and the key count after any flush."""
        if keys >= self.max_keys and on_full is not None:
            self.keys = keys
            on_full()
            keys = self.keys
        hour = int(t // 3600)
        lo = hour * 3600.0
        day = self.days.get(hour // 24) or self.days.setdefault(hour // 24, {})
        return lo, lo + 3600.0, day, self.hours.get(hour) or self.hours.setdefault(hour, {}), keys

    def _who(self, host: str) -> str:
        """A host's attribution as one interned string (its hash is computed once): the app id,
        or NUL + the unrecognised domain, or "" without a host."""
        app_id, domain = self.attributor(host)
        who = sys.intern(app_id or (_DOMAIN + domain if domain else ""))
        self._hosts[host] = who
        self._split[who] = (app_id, domain)
        return who

    def rollup(self) -> Rollup:
        """Derive the rollup aggregates and empty the accumulator.

        Per day, the derived tables are dicts keyed by one string (attribution, device or user)
        instead of tuples: one fine key updates up to four of them.
        """
        split = self._split
        names = self.users
        without_host = attributed = unrecognised = 0
        out = Rollup()
        canonical: dict[str, str] = {"": ""}
        blocked_hits = out.blocked
        uploads: dict[tuple[str, int, str], list[Any]] = {}
        """(user, day, app) -> [bytes up, first seen, last seen, machine]: see `Rollup.user_apps`."""
        seen_as: dict[str, list[float]] = {}
        """raw user name -> [first seen, last seen]: the forms behind each user."""
        with paused_gc():
            for day, fine in self.days.items():
                apps: dict[str, Row] = {}
                devices: dict[str, Row] = {}
                users: dict[str, Row] = {}
                device_apps: dict[tuple[str, str], Row] = {}
                last_user: dict[str, tuple[float, str]] = {}
                for (who, device, raw_user, ip), acc in fine.items():
                    # Per key, inline: a function call here costs per fine key (see add_all).
                    user = canonical.get(raw_user)
                    if user is None:
                        user = canonical[raw_user] = names(raw_user)
                    if user:
                        span = seen_as.get(raw_user)
                        if span is None:
                            seen_as[raw_user] = [acc[4], acc[5]]
                        else:
                            if acc[4] < span[0]:
                                span[0] = acc[4]
                            if acc[5] > span[1]:
                                span[1] = acc[5]
                    if not who:
                        without_host += int(acc[0])
                        continue
                    is_app = who[0] != _DOMAIN
                    if is_app:
                        attributed += int(acc[0])
                        _bump(device_apps, (device, who), acc)
                        if acc[1] and user:
                            sent = uploads.get((user, day, who))
                            if sent is None:
                                uploads[(user, day, who)] = [acc[1], acc[4], acc[5], device]
                            else:
                                sent[0] += acc[1]
                                if acc[4] < sent[1]:
                                    sent[1] = acc[4]
                                if acc[5] > sent[2] or (acc[5] == sent[2] and device > sent[3]):
                                    sent[2], sent[3] = acc[5], device
                        if acc[3]:
                            hit = blocked_hits.get((device, user, who))
                            blocked_hits[(device, user, who)] = (
                                (int(acc[3]), acc[5])
                                if hit is None
                                else (hit[0] + int(acc[3]), max(hit[1], acc[5]))
                            )
                    else:
                        unrecognised += int(acc[0])
                    row = _bump(apps, who, acc, 3)
                    row[6].add(device)
                    row[8].add(ip)
                    drow = _bump(devices, device, acc, 2)
                    drow[7].add(ip)
                    if user:
                        row[7].add(user)
                        drow[6].add(user)
                        # The latest by time (between equal times, the greater name: stable).
                        latest = last_user.get(device)
                        if (
                            latest is None
                            or acc[5] > latest[0]
                            or (acc[5] == latest[0] and user > latest[1])
                        ):
                            last_user[device] = (acc[5], user)
                        urow = _bump(users, user, acc, 2)
                        urow[6].add(device)
                        if is_app:
                            urow[7].add(who)
                for who, r in apps.items():
                    app_id, domain = split[who]
                    out.apps[(day, app_id, domain)] = AppDay(_usage(r), r[6], r[7], r[8])
                for device, r in devices.items():
                    seen_last, name = last_user.get(device, (0.0, ""))
                    out.devices[(day, device)] = DeviceDay(_usage(r), r[6], r[7], name, seen_last)
                    if self.source is not None:
                        _span(out.sources, (device, self.source), r[4], r[5])
                for user, r in users.items():
                    out.users[(day, user)] = UserDay(_usage(r), r[6], r[7])
                for (device, who), r in device_apps.items():
                    out.device_apps[(device, day, who)] = _usage(r)
            for key, (sent_up, first, last, machine) in uploads.items():
                out.user_apps[key] = UserUpload(int(sent_up), first, last, machine)
            for raw_user, (first, last) in seen_as.items():
                out.user_forms[(canonical[raw_user], raw_user)] = (first, last)
            for hour, hourly in self.hours.items():
                for app_id, (tx, up, down, blocked) in hourly.items():
                    out.hours[(hour, app_id)] = Usage(
                        tx, up, down, blocked, hour * 3600.0, hour * 3600.0
                    )
        self.days = {}
        self.hours = {}
        self.keys = 0
        self.without_host += without_host
        self.attributed += attributed
        self.unrecognised += unrecognised
        return out
