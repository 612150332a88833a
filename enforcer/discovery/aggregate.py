"""Records -> usage aggregates (pure, in memory, bounded).

The hot loop does one dictionary update per record, keyed by the finest grain the reports need
(hour, host, device, user, address); everything else (per app, per device, per user, per day) is
derived from those few keys when the batch is flushed. A log of a million lines usually has a
few thousand distinct keys, so memory stays small; `full` tells the caller to flush early when a
file has more.
"""

from __future__ import annotations

from collections.abc import Iterable

from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.store.discovery import AppDay, DeviceDay, Rollup, Usage, UserDay

FineKey = tuple[int, str, str, str, str]
"""(hour, host, device, user, address)."""


class Aggregator:
    """Accumulates records; `rollup()` turns them into per-app/device/user/day aggregates."""

    def __init__(self, attributor: Attributor, *, max_keys: int = 200_000) -> None:
        self.attributor = attributor
        self.max_keys = max_keys
        self.fine: dict[FineKey, list[float]] = {}
        self.records = 0
        self.without_host = 0
        self.attributed = 0
        self.unrecognised = 0

    @property
    def full(self) -> bool:
        return len(self.fine) >= self.max_keys

    def add_all(self, records: Iterable[Record]) -> None:
        """The hot loop: one tuple and one dict probe per record."""
        fine = self.fine
        count = 0
        for r in records:
            key = (int(r.time // 3600), r.host, r.device or r.src_ip, r.user, r.src_ip)
            acc = fine.get(key)
            blocked = 1 if r.action == "blocked" else 0
            if acc is None:
                fine[key] = [1, r.bytes_up, r.bytes_down, blocked, r.time, r.time]
            else:
                acc[0] += 1
                acc[1] += r.bytes_up
                acc[2] += r.bytes_down
                acc[3] += blocked
                if r.time < acc[4]:
                    acc[4] = r.time
                elif r.time > acc[5]:
                    acc[5] = r.time
            count += 1
        self.records += count

    def rollup(self) -> Rollup:
        """Derive the rollup aggregates and empty the accumulator."""
        out = Rollup()
        attribute = self.attributor
        for (hour, host, device, user, ip), acc in self.fine.items():
            if not host:
                self.without_host += int(acc[0])
                continue
            app_id, domain = attribute(host)
            if app_id:
                self.attributed += int(acc[0])
            else:
                self.unrecognised += int(acc[0])
            day = hour // 24
            usage = Usage(int(acc[0]), int(acc[1]), int(acc[2]), int(acc[3]), acc[4], acc[5])
            a = out.apps.get((day, app_id, domain))
            if a is None:
                a = out.apps[(day, app_id, domain)] = AppDay()
            a.usage.add(usage)
            a.devices.add(device)
            if user:
                a.users.add(user)
            a.ips.add(ip)
            d = out.devices.get((day, device))
            if d is None:
                d = out.devices[(day, device)] = DeviceDay()
            d.usage.add(usage)
            if user:
                d.users.add(user)
            d.ips.add(ip)
            if user:
                u = out.users.get((day, user))
                if u is None:
                    u = out.users[(day, user)] = UserDay()
                u.usage.add(usage)
                u.devices.add(device)
                if app_id:
                    u.apps.add(app_id)
            if app_id:
                out.device_apps.setdefault((device, day, app_id), Usage()).add(usage)
                out.hours.setdefault((hour, app_id), Usage()).add(usage)
        self.fine = {}
        return out
