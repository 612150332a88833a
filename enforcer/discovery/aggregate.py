"""Records -> usage aggregates (pure, in memory, bounded).

The hot loop does one dictionary update per record, keyed by the finest grain the reports need
(hour, app or unrecognised domain, device, user, address); everything else (per app, per device, per user, per day) is
derived from those few keys when the batch is flushed. A log of a million lines usually has a
few thousand distinct keys, so memory stays small; `full` tells the caller to flush early when a
file has more.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import BadLine, Record
from enforcer.store.discovery import AppDay, DeviceDay, Rollup, Usage, UserDay

FineKey = tuple[int, str, str, str, str]
"""(hour, attribution, device, user, address); see `Aggregator._who`."""

_DOMAIN = "\x00"

Acc = list[float]
"""[transactions, bytes_up, bytes_down, blocked, first_seen, last_seen]."""


def _bump(table: dict[Any, Acc], key: Any, acc: Acc) -> Acc:
    """Add six counters into `table[key]` (created on first use); returns the row."""
    row = table.get(key)
    if row is None:
        row = table[key] = acc[:6]
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


def _usage(acc: Acc) -> Usage:
    return Usage(int(acc[0]), int(acc[1]), int(acc[2]), int(acc[3]), acc[4], acc[5])


class Aggregator:
    """Accumulates records; `rollup()` turns them into per-app/device/user/day aggregates."""

    def __init__(self, attributor: Attributor, *, max_keys: int = 200_000) -> None:
        self.attributor = attributor
        self.max_keys = max_keys
        self.fine: dict[FineKey, Acc] = {}
        self._hosts: dict[str, str] = {}
        self._split: dict[str, tuple[str, str]] = {"": ("", "")}
        self.records = 0
        self.without_host = 0
        self.attributed = 0
        self.unrecognised = 0

    @property
    def full(self) -> bool:
        return len(self.fine) >= self.max_keys

    def add_all(
        self,
        records: Iterable[Record | BadLine],
        *,
        on_bad: Callable[[BadLine], None] | None = None,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        """The hot loop: a cached attribution, one tuple and one dict probe per record.

        Bad lines (straight from a parser) go to `on_bad`; when the accumulator holds `max_keys`
        keys, `on_full` is called (to merge `rollup()` into the store) and accumulation goes on.
        """
        fine = self.fine
        hosts = self._hosts
        record_type = Record
        count = 0
        for r in records:
            if type(r) is not record_type:
                if on_bad is not None:
                    on_bad(r)  # type: ignore[arg-type]
                continue
            if not count & 0x3FFF and on_full is not None and len(fine) >= self.max_keys:
                on_full()
                fine = self.fine
            # One unpack instead of ten attribute reads: this loop runs once per log line.
            t, host, ip, user, device, _dip, _dport, up, down, action = r
            who = hosts.get(host)
            if who is None:
                who = self._who(host)
            key = (int(t // 3600), who, device or ip, user, ip)
            acc = fine.get(key)
            if acc is None:
                fine[key] = [1, up, down, 1 if action == "blocked" else 0, t, t]
            else:
                acc[0] += 1
                acc[1] += up
                acc[2] += down
                if action == "blocked":
                    acc[3] += 1
                if t < acc[4]:
                    acc[4] = t
                elif t > acc[5]:
                    acc[5] = t
            count += 1
        self.records += count

    def _who(self, host: str) -> str:
        """A host's attribution as one interned string (its hash is computed once): the app id,
        or NUL + the unrecognised domain, or "" without a host."""
        app_id, domain = self.attributor(host)
        who = sys.intern(app_id or (_DOMAIN + domain if domain else ""))
        self._hosts[host] = who
        self._split[who] = (app_id, domain)
        return who

    def rollup(self) -> Rollup:
        """Derive the rollup aggregates and empty the accumulator."""
        apps: dict[tuple[int, str, str], Acc] = {}
        app_sets: dict[tuple[int, str, str], tuple[set[str], set[str], set[str]]] = {}
        devices: dict[tuple[int, str], Acc] = {}
        device_sets: dict[tuple[int, str], tuple[set[str], set[str]]] = {}
        users: dict[tuple[int, str], Acc] = {}
        user_sets: dict[tuple[int, str], tuple[set[str], set[str]]] = {}
        device_apps: dict[tuple[str, int, str], Acc] = {}
        hours: dict[tuple[int, str], Acc] = {}
        split = self._split
        for (hour, who, device, user, ip), acc in self.fine.items():
            app_id, domain = split[who]
            if not app_id and not domain:
                self.without_host += int(acc[0])
                continue
            if app_id:
                self.attributed += int(acc[0])
            else:
                self.unrecognised += int(acc[0])
            day = hour // 24
            key = (day, app_id, domain)
            _bump(apps, key, acc)
            sets = app_sets.get(key)
            if sets is None:
                sets = app_sets[key] = (set(), set(), set())
            sets[0].add(device)
            sets[2].add(ip)
            dkey = (day, device)
            _bump(devices, dkey, acc)
            dsets = device_sets.get(dkey)
            if dsets is None:
                dsets = device_sets[dkey] = (set(), set())
            dsets[1].add(ip)
            if user:
                sets[1].add(user)
                dsets[0].add(user)
                ukey = (day, user)
                _bump(users, ukey, acc)
                usets = user_sets.get(ukey)
                if usets is None:
                    usets = user_sets[ukey] = (set(), set())
                usets[0].add(device)
                if app_id:
                    usets[1].add(app_id)
            if app_id:
                _bump(device_apps, (device, day, app_id), acc)
                _bump(hours, (hour, app_id), acc)
        self.fine = {}
        out = Rollup()
        for key, acc in apps.items():
            d, u, i = app_sets[key]
            out.apps[key] = AppDay(_usage(acc), d, u, i)
        for dkey, acc in devices.items():
            u, i = device_sets[dkey]
            out.devices[dkey] = DeviceDay(_usage(acc), u, i)
        for ukey, acc in users.items():
            d, a = user_sets[ukey]
            out.users[ukey] = UserDay(_usage(acc), d, a)
        out.device_apps = {k: _usage(v) for k, v in device_apps.items()}
        out.hours = {k: _usage(v) for k, v in hours.items()}
        return out
