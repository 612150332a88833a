"""The file sinks' shared behaviour: what is exported, the diff, the atomic and streamed write."""

from __future__ import annotations

import stat
import sys
import tracemalloc
from pathlib import Path

import pytest

from enforcer.models import Action
from enforcer.plan.model import ChangeAction
from enforcer.sinks import hosts, rpz
from enforcer.sinks._files import write_atomically
from enforcer.sinks.base import SinkError

from .helpers import ind, settings


def test_hosts_file_holds_device_wide_blocks_sorted(tmp_path: Path) -> None:
    path = tmp_path / "blocked.hosts"
    cfg = settings(hosts_path=path)
    desired = [
        ind("zeta.example"),
        ind("alpha.example"),
        ind("ok.alpha.example", Action.ALLOWED),  # hosts has no exceptions
        ind("audit.example", Action.AUDIT),  # observing is not a resolver's job
        ind("group.example", scope="engineering"),  # a resolver cannot tell device groups apart
        ind("bad name.example"),
    ]
    plan = hosts.plan(desired, 7, cfg)
    assert [(c.action, c.name) for c in plan.changes] == [
        (ChangeAction.CREATE, "alpha.example"),
        (ChangeAction.CREATE, "zeta.example"),
    ]
    assert plan.skipped == (("bad name.example", "not a plain DNS name"),)
    result = hosts.apply(plan, cfg)
    assert result.written and result.created == 2 and result.ok
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Managed by Enforcer (sink hosts), revision 7.")
    assert lines[1:] == ["0.0.0.0 alpha.example", "0.0.0.0 zeta.example"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["blocked.hosts"]  # no temporary file left


def test_plan_diffs_against_the_file_and_the_revision(tmp_path: Path) -> None:
    cfg = settings(rpz_path=tmp_path / "rpz.zone")
    rpz.apply(rpz.plan([ind("a.example"), ind("b.example")], 1, cfg), cfg)

    same = rpz.plan([ind("b.example"), ind("a.example")], 1, cfg)
    assert not same.has_changes

    serial_only = rpz.plan([ind("a.example"), ind("b.example")], 2, cfg)
    assert serial_only.changes == () and serial_only.rewrite

    cfg_redirect = settings(rpz_path=tmp_path / "rpz.zone", rpz_redirect_ip="2001:db8::1")
    changed = rpz.plan([ind("b.example"), ind("c.example")], 3, cfg_redirect)
    assert [(c.action.value, c.name, c.before, c.after) for c in changed.changes] == [
        ("~", "b.example", "CNAME .", "AAAA 2001:db8::1"),
        ("+", "c.example", None, "AAAA 2001:db8::1"),
        ("-", "a.example", "CNAME .", None),
    ]
    assert changed.summary() == "Plan: 1 to add, 1 to change, 1 to destroy."
    rpz.apply(changed, cfg_redirect)
    text = (tmp_path / "rpz.zone").read_text()
    assert "*.c.example AAAA 2001:db8::1\n" in text and "a.example" not in text
    assert "@ SOA localhost. hostmaster.localhost. 3 3600" in text


def test_a_file_that_is_not_ours_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    cfg = settings(hosts_path=path)
    with pytest.raises(SinkError, match="not ours"):
        hosts.plan([ind("a.example")], 1, cfg)
    assert path.read_text() == "127.0.0.1 localhost\n"


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")

    def lines() -> object:
        yield "new\n"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(path, lines())  # type: ignore[arg-type]
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_misconfiguration_is_refused_with_the_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="ENFORCER_RPZ_PATH"):
        rpz.plan([], 1, settings())
    with pytest.raises(SinkError, match="ENFORCER_RPZ_REDIRECT_IP"):
        rpz.plan([], 1, settings(rpz_path=tmp_path / "z", rpz_redirect_ip="block-page"))


def test_a_failing_reload_command_is_reported(tmp_path: Path) -> None:
    cfg = settings(
        rpz_path=tmp_path / "rpz.zone", rpz_reload_command=f"{sys.executable} -c 'exit(3)'"
    )
    result = rpz.apply(rpz.plan([ind("a.example")], 1, cfg), cfg)
    assert result.written and "exited 3" in result.error


def test_writing_streams_instead_of_building_the_file_in_memory(tmp_path: Path) -> None:
    cfg = settings(rpz_path=tmp_path / "rpz.zone")
    plan = rpz.plan([ind(f"n{i}.example.com") for i in range(100_000)], 1, cfg)
    tracemalloc.start()
    try:
        rpz.apply(plan, cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = (tmp_path / "rpz.zone").stat().st_size
    assert size > 5_000_000
    assert peak < size / 2, (peak, size)


def test_a_file_replaced_between_plan_and_apply_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    cfg = settings(hosts_path=path)
    plan = hosts.plan([ind("a.example")], 1, cfg)
    path.write_text("127.0.0.1 localhost\n")
    with pytest.raises(SinkError, match="not ours"):
        hosts.apply(plan, cfg)
    assert path.read_text() == "127.0.0.1 localhost\n"
