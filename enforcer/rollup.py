"""What a batch of discovery records adds to the rollups (plain data, no I/O).

`enforcer.discovery.aggregate` builds a `Rollup` from records and `enforcer.store.rollups`
merges it into the rollup tables; this module sits below both so the pure aggregation does not
depend on the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Usage:
    """Counters of one aggregate."""

    transactions: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    blocked: int = 0
    first_seen: float = float("inf")
    last_seen: float = 0.0


@dataclass
class AppDay:
    """One app's (or unrecognised domain's) usage on a day, with who reached it."""

    usage: Usage = field(default_factory=Usage)
    devices: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)


@dataclass
class DeviceDay:
    """One device's usage on a day, with its users and addresses."""

    usage: Usage = field(default_factory=Usage)
    users: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    last_user: str = ""
    """The user seen last that day, by time ("" when none)."""
    last_user_seen: float = 0.0


@dataclass
class UserDay:
    """One user's usage on a day, with the devices and catalog apps they used."""

    usage: Usage = field(default_factory=Usage)
    devices: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)


@dataclass
class UserUpload:
    """A user's upload to an app on a day, and the machine of their last transfer to it."""

    bytes_up: int
    first_seen: float
    last_seen: float
    machine: str


@dataclass
class Rollup:
    """What a batch of records adds to each rollup table (keys by name, not yet ordinals)."""

    apps: dict[tuple[int, str, str], AppDay] = field(default_factory=dict)
    """(day, app_id, domain)."""
    devices: dict[tuple[int, str], DeviceDay] = field(default_factory=dict)
    device_apps: dict[tuple[str, int, str], Usage] = field(default_factory=dict)
    """(device, day, app_id) for catalog apps."""
    users: dict[tuple[int, str], UserDay] = field(default_factory=dict)
    hours: dict[tuple[int, str], Usage] = field(default_factory=dict)
    """(hour, app_id) for catalog apps."""
    user_forms: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    """(user, raw form seen) -> (first seen, last seen): the names behind each user."""
    sources: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    """(machine, source) -> (first seen, last seen): ``logs`` or ``device <id>``."""
    user_apps: dict[tuple[str, int, str], UserUpload] = field(default_factory=dict)
    """(user, day, app_id) -> what the user uploaded to that catalog app that day (only
    uploads of more than 0 bytes): the per-user upload-spike alert policy's facts for logs."""
    blocked: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    """(machine, user, app_id) -> (blocked transactions, last seen) for catalog apps: what the
    blocked-app alert policies check in logs (the last seen is the key's, blocked or not)."""
