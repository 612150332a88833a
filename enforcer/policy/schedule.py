"""When a schedule is in force, and when that next changes: pure time arithmetic, no clock.

A window is written in local wall-clock time; it is turned into an interval of UTC instants for
each local date it starts on, through `zoneinfo`, so daylight saving time is the zone's business:
a 09:00-17:30 window is 09:00-17:30 local on both sides of a change (07:00-15:30 UTC in summer in
Berlin, 08:00-16:30 in winter). A local time that does not exist (02:30 on the morning clocks go
forward) is read with the offset before the change, i.e. one hour later on the new clock (a
window of 02:15-02:45 is held 03:15-03:45 that morning; one from 02:30 to 03:15 is empty); a local
time that happens twice (02:30 on the morning clocks go back) means its first occurrence.

Windows that touch or overlap are merged, so an edge is a moment at which the schedule really
changes (Monday 22:00-24:00 followed by Tuesday 00:00-06:00 has no edge at midnight).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator

from enforcer.policy.schema import DAYS, Schedule, clock_minutes

_LOOK_BACK = 2
_LOOK_AHEAD = 9
"""Local dates around the instant asked about whose windows are considered: a window starts
at most one day before it ends, and every weekly schedule has an edge within eight days unless
it is always (or never) in force."""


def _local(day: dt.date, minutes: int, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The UTC instant of a wall-clock time (minutes after `day`'s midnight, up to 48 hours)."""
    day = day + dt.timedelta(days=minutes // (24 * 60))
    minutes %= 24 * 60
    wall = dt.datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=zone)
    return wall.astimezone(dt.UTC)


def _intervals(
    schedule: Schedule, around: dt.datetime
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    today = around.astimezone(zone).date()
    for offset in range(-_LOOK_BACK, _LOOK_AHEAD + 1):
        day = today + dt.timedelta(days=offset)
        weekday = DAYS[day.weekday()]
        for window in schedule.windows:
            if weekday not in window.days:
                continue
            start, end = clock_minutes(window.from_), clock_minutes(window.to)
            if end <= start:  # across midnight: ends on the next day
                end += 24 * 60
            begin, finish = _local(day, start, zone), _local(day, end, zone)
            if finish > begin:  # a window inside a skipped hour is empty that day
                yield begin, finish


def _merged(schedule: Schedule, around: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for begin, finish in sorted(_intervals(schedule, around)):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((begin, finish))
    return merged


def in_force(schedule: Schedule, now: dt.datetime) -> bool:
    """Whether `now` (an aware instant) is inside one of the schedule's windows."""
    return any(begin <= now < finish for begin, finish in _merged(schedule, now))


def next_edge(schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """The first instant after `now` at which `in_force` changes; None for a schedule that is
    in force all week (or whose windows are all empty)."""
    edges = [t for interval in _merged(schedule, now) for t in interval if t > now]
    # The ends of the looked-at range are not edges: nothing is known beyond them.
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    horizon = _local(now.astimezone(zone).date() + dt.timedelta(days=_LOOK_AHEAD), 0, zone)
    edges = [t for t in edges if t < horizon]
    return min(edges) if edges else None
