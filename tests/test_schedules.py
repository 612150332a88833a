"""Named schedules: window edges, windows across midnight, several windows a day, and the two
daylight saving changes of Europe/Berlin (last Sunday of March and of October), all with an
injected clock; then how a schedule changes decisions, and the errors naming file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from enforcer.catalog import Catalog
from enforcer.errors import PolicySetError
from enforcer.models import ALL_DEVICES, Tag
from enforcer.policy.evaluate import compile_policy
from enforcer.policy.loader import read_policy_files
from enforcer.policy.schedule import in_force, next_edge
from enforcer.policy.schema import Schedule
from tests.conftest import write_policy

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def schedule(*windows: dict[str, object], zone: str = "Europe/Berlin") -> Schedule:
    return Schedule.model_validate({"name": "s", "timezone": zone, "windows": list(windows)})


WORK = schedule({"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:30"})


def test_work_hours_edges_in_winter_time() -> None:
    # Friday 27 March 2026, CET (UTC+1): 09:00 local is 08:00 UTC, 17:30 is 16:30 UTC.
    assert not in_force(WORK, at(2026, 3, 27, 7, 59, 59))
    assert in_force(WORK, at(2026, 3, 27, 8, 0))
    assert next_edge(WORK, at(2026, 3, 27, 7, 0)) == at(2026, 3, 27, 8, 0)
    assert in_force(WORK, at(2026, 3, 27, 16, 29, 59))
    assert not in_force(WORK, at(2026, 3, 27, 16, 30))
    assert next_edge(WORK, at(2026, 3, 27, 8, 0)) == at(2026, 3, 27, 16, 30)
    # Saturday: nothing; the next edge is Monday 09:00, already summer time (07:00 UTC).
    assert not in_force(WORK, at(2026, 3, 28, 10, 0))
    assert next_edge(WORK, at(2026, 3, 27, 16, 30)) == at(2026, 3, 30, 7, 0)


def test_work_hours_after_the_october_change() -> None:
    # Friday 23 October 2026 is summer time (UTC+2), Monday 26 October winter time (UTC+1).
    assert in_force(WORK, at(2026, 10, 23, 7, 0))
    assert not in_force(WORK, at(2026, 10, 23, 6, 59))
    assert next_edge(WORK, at(2026, 10, 23, 15, 0)) == at(2026, 10, 23, 15, 30)
    assert next_edge(WORK, at(2026, 10, 23, 15, 30)) == at(2026, 10, 26, 8, 0)
    assert not in_force(WORK, at(2026, 10, 26, 7, 30))  # 08:30 local: not yet


def test_a_night_window_across_the_march_change_is_one_hour_shorter() -> None:
    nights = schedule({"days": ["sat"], "from": "22:00", "to": "06:00"})
    # Saturday 28 March 22:00 CET = 21:00 UTC; Sunday 29 March 06:00 CEST = 04:00 UTC.
    assert not in_force(nights, at(2026, 3, 28, 20, 59))
    assert in_force(nights, at(2026, 3, 28, 21, 0))
    assert next_edge(nights, at(2026, 3, 28, 21, 0)) == at(2026, 3, 29, 4, 0)
    assert in_force(nights, at(2026, 3, 29, 3, 59, 59))
    assert not in_force(nights, at(2026, 3, 29, 4, 0))
    # The window belongs to the day it starts on: Sunday night is not in it.
    assert not in_force(nights, at(2026, 3, 29, 21, 30))
    assert next_edge(nights, at(2026, 3, 29, 4, 0)) == at(2026, 4, 4, 20, 0)


def test_a_night_window_across_the_october_change_is_one_hour_longer() -> None:
    nights = schedule({"days": ["sat"], "from": "22:00", "to": "06:00"})
    # Saturday 24 October 22:00 CEST = 20:00 UTC; Sunday 25 October 06:00 CET = 05:00 UTC.
    assert in_force(nights, at(2026, 10, 24, 20, 0))
    assert in_force(nights, at(2026, 10, 25, 4, 30))
    assert next_edge(nights, at(2026, 10, 24, 20, 0)) == at(2026, 10, 25, 5, 0)
    assert not in_force(nights, at(2026, 10, 25, 5, 0))


def test_a_window_in_the_skipped_hour_moves_an_hour_later_that_day() -> None:
    odd = schedule({"days": ["sun"], "from": "02:15", "to": "02:45"})
    # 29 March 2026: 02:00-03:00 local does not exist in Berlin; the window is read with the
    # offset before the change (UTC+1): 01:15-01:45 UTC, i.e. 03:15-03:45 on the new clock.
    assert not in_force(odd, at(2026, 3, 29, 1, 14))
    assert in_force(odd, at(2026, 3, 29, 1, 15))
    assert next_edge(odd, at(2026, 3, 29, 1, 15)) == at(2026, 3, 29, 1, 45)
    assert next_edge(odd, at(2026, 3, 29, 1, 45)) == at(2026, 4, 5, 0, 15)  # CEST next week
    # A window from inside the gap to just after it is empty that day, and only that day.
    short = schedule({"days": ["sun"], "from": "02:30", "to": "03:15"})
    assert next_edge(short, at(2026, 3, 28, 12, 0)) == at(2026, 4, 5, 0, 30)


def test_several_windows_a_day_and_windows_that_touch() -> None:
    split = schedule(
        {"days": ["mon"], "from": "08:00", "to": "12:00"},
        {"days": ["mon"], "from": "13:00", "to": "17:00"},
        zone="UTC",
    )
    monday = (2026, 11, 23)
    assert in_force(split, at(*monday, 11, 59)) and not in_force(split, at(*monday, 12, 30))
    assert next_edge(split, at(*monday, 9, 0)) == at(*monday, 12, 0)
    assert next_edge(split, at(*monday, 12, 0)) == at(*monday, 13, 0)
    touching = schedule(
        {"days": ["mon"], "from": "22:00", "to": "24:00"},
        {"days": ["tue"], "from": "00:00", "to": "06:00"},
        zone="UTC",
    )
    assert in_force(touching, at(2026, 11, 24, 0, 0))
    # No edge at midnight: the schedule does not change there.
    assert next_edge(touching, at(*monday, 23, 0)) == at(2026, 11, 24, 6, 0)


def test_a_schedule_in_force_all_week_has_no_edge() -> None:
    always = schedule({"from": "00:00", "to": "24:00"})
    assert in_force(always, at(2026, 3, 29, 1, 30))
    assert next_edge(always, at(2026, 3, 29, 1, 30)) is None


NOW_IN = at(2026, 11, 25, 10, 0)  # Wednesday 11:00 in Berlin
NOW_OUT = at(2026, 11, 25, 18, 0)  # Wednesday 19:00 in Berlin

SCHEDULES = """
schedules:
  - name: work-hours
    timezone: Europe/Berlin
    windows:
      - days: [mon, tue, wed, thu, fri]
        from: "09:00"
        to: "17:30"
"""


def compile_at(directory: Path, catalog: Catalog, now: dt.datetime):  # type: ignore[no-untyped-def]
    return compile_policy(read_policy_files(directory), catalog, now)


POLICY = (
    SCHEDULES
    + """
apps:
  - app: boxy
    tag: unsanctioned
    schedule: work-hours
rules:
  - name: no chat at work
    category: generative-ai
    tag: unsanctioned
    schedule: work-hours
  - name: file sharing watched
    category: file-sharing
    tag: monitored
  - name: paste blocked
    category: paste
    tag: unsanctioned
exceptions:
  - app: pastey
    tag: sanctioned
    schedule: work-hours
    expires: 2027-01-01
    reason: paste during the migration, office hours only
"""
)


def test_a_scheduled_entry_decides_only_inside_its_windows(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    inside = compile_at(pol, catalog, NOW_IN).decisions
    outside = compile_at(pol, catalog, NOW_OUT).decisions
    # An apps entry: in force inside; outside, the next level (the category rule) decides.
    assert inside[("boxy", ALL_DEVICES)].tag is Tag.UNSANCTIONED
    assert inside[("boxy", ALL_DEVICES)].schedule == "work-hours"
    assert outside[("boxy", ALL_DEVICES)].tag is Tag.MONITORED
    assert outside[("boxy", ALL_DEVICES)].reason == "rule 'file sharing watched'"
    # A rule: outside its windows no other entry tags the app.
    assert inside[("chatbot", ALL_DEVICES)].tag is Tag.UNSANCTIONED
    assert ("chatbot", ALL_DEVICES) not in outside
    # An exception: sanctioned inside, the blocking rule outside.
    assert inside[("pastey", ALL_DEVICES)].tag is Tag.SANCTIONED
    assert outside[("pastey", ALL_DEVICES)].tag is Tag.UNSANCTIONED


def test_the_state_knows_each_scheduled_entry_and_when_it_next_changes(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "a.yaml", POLICY)
    state = compile_at(pol, catalog, NOW_IN)
    edge = at(2026, 11, 25, 16, 30)  # 17:30 in Berlin (winter time)
    assert state.next_expiry() == edge
    assert {(s.section, s.label, s.in_force, s.next_edge) for s in state.scheduled} == {
        ("apps", "boxy", True, edge),
        ("rules", "no chat at work", True, edge),
        ("exceptions", "pastey", True, edge),
    }
    boxy = next(a for a in state.catalog if a.id == "boxy")
    [entry] = state.schedules_of(boxy)
    assert entry.origin.file == "policies/a.yaml" and entry.origin.line == 10
    later = compile_at(pol, catalog, edge)
    assert later.next_expiry() == at(2026, 11, 26, 8, 0)
    assert not any(s.in_force for s in later.scheduled)


def errors_of(directory: Path, catalog: Catalog) -> list[str]:
    with pytest.raises(PolicySetError) as info:
        compile_at(directory, catalog, NOW_IN)
    return [str(e) for e in info.value.errors]


def test_an_unknown_schedule_is_an_error_naming_file_line_and_field(
    tmp_path: Path, catalog: Catalog
) -> None:
    pol = tmp_path / "policies"
    write_policy(pol, "00-schedules.yaml", SCHEDULES)
    write_policy(
        pol,
        "apps.yaml",
        """
        apps:
          - app: boxy
            tag: sanctioned
          - app: pastey
            tag: unsanctioned
            schedule: work-hour
        rules:
          - name: nights
            category: paste
            tag: monitored
            schedule: nights
        """,
    )
    assert errors_of(pol, catalog) == [
        "policies/apps.yaml:4: apps.schedule: schedule 'work-hour' is not declared in any "
        "schedules section (did you mean 'work-hours'?)",
        "policies/apps.yaml:8: rules.schedule: schedule 'nights' is not declared in any "
        "schedules section",
    ]


def test_bad_schedules_are_refused_with_file_and_line(tmp_path: Path, catalog: Catalog) -> None:
    pol = tmp_path / "policies"
    write_policy(
        pol,
        "s.yaml",
        """
        schedules:
          - name: a
            timezone: Europe/Berlinn
            windows: [{from: "09:00", to: "17:00"}]
          - name: b
            timezone: UTC
            windows:
              - days: [monday]
                from: "09:00"
                to: "17:00"
          - name: c
            timezone: UTC
            windows: [{from: "09:00", to: "25:00"}]
          - name: d
            timezone: UTC
            windows: [{from: "09:00", to: "09:00"}]
          - name: d
            timezone: UTC
            windows: [{from: "09:00", to: "10:00"}]
          - name: e
            timezone: UTC
            windows: [{from: "10:00", to: "11:00"}]
          - name: e
            timezone: UTC
            windows: [{from: "10:00", to: "12:00"}]
        apps:
          - {app: boxy, tag: unsanctioned, schedule: a}
        """,
    )
    errors = errors_of(pol, catalog)
    assert errors[0].startswith("policies/s.yaml:3: schedules[0].timezone: ")
    assert "unknown time zone 'Europe/Berlinn'" in errors[0]
    assert errors[1].startswith("policies/s.yaml:8: schedules[1].windows[0].days[0]: 'monday'")
    assert errors[2] == (
        "policies/s.yaml:13: schedules[2].windows[0].to: Value error, '25:00' is not a time of "
        "day written HH:MM"
    )
    assert "from and to are equal" in errors[3] and errors[3].startswith("policies/s.yaml:16:")
    # A refused schedule's name is not reported again where it is used; a duplicate is.
    assert errors[4:] == [
        "policies/s.yaml:23: schedules.name: 'e' already declared at policies/s.yaml:20"
    ]
