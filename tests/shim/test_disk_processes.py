"""Disk faults and kill -9 against real `enforcer shim` processes (issue 14.1, 14.6, 14.7).

The faults are real: SIGKILL of the shim, a tmpfs of a few MiB mounted on the state
directory and filled up (``No space left on device`` for the journal, the spool and the
cache), a read-only bind mount of the state directory in the shim's own mount namespace
(``unshare -m``), cache files cut short, emptied or with pages overwritten. The server is the
real API (uvicorn in a thread, SQLite store), the DNS client dnspython, the upstream the fake
authoritative server of conftest. Needs root (mounts), like the interception tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from enforcer.models import Action, Indicator
from enforcer.shim.report import journal
from tests.api.helpers import apply_indicators

from .conftest import FakeUpstream
from .test_agent import free_dns_port
from .test_sync import ENROLL_SECRET, LiveServer, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs and a read-only bind mount"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed"),
]


class ShimProcess:
    """One `enforcer shim` process (optionally wrapped, e.g. in `unshare -m`) and its log."""

    def __init__(
        self,
        server: str,
        state: Path,
        upstream: int,
        log_file: Path,
        *,
        wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
        metrics_port: int | None = None,
    ) -> None:
        self.dns_port = free_dns_port()
        self.log_file = log_file
        argv = [
            sys.executable, "-m", "enforcer", "shim", "--server", server,
            "--enroll-secret", ENROLL_SECRET, "--state-dir", str(state),
            "--dns-listen", f"127.0.0.1:{self.dns_port}",
            "--proxy-listen", f"127.0.0.1:{free_port()}",
            "--upstream", f"127.0.0.1:{upstream}", "--sync-wait", "5",
        ]  # fmt: skip
        if metrics_port is not None:
            argv += ["--metrics-listen", f"127.0.0.1:{metrics_port}"]
        self.mark = log_file.stat().st_size if log_file.exists() else 0
        self._out = log_file.open("ab")
        env = {**os.environ, "ENFORCER_LOG_FORMAT": "json"}
        self.proc = subprocess.Popen(wrap(argv), stdout=self._out, stderr=self._out, env=env)
        self.wait_for(lambda: "shim.running" in self.log())

    def log(self) -> str:
        """This run's part of the log."""
        return self.log_file.read_bytes()[self.mark :].decode(errors="replace")

    def records(self, event: str) -> list[dict[str, object]]:
        found = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found

    def wait_for(self, check: Callable[[], bool], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the shim exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {within} s; log:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def rcode(self, name: str) -> int:
        query = dns.message.make_query(name, "A")
        return dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=5).rcode()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server that is *not* started: each test decides when it is there."""
    live = LiveServer(tmp_path / "server.sqlite")
    yield live
    live.stop()
    live.engine.dispose()


def stored(server: LiveServer) -> list[str]:
    """The domains of the events the server stored (one entry per stored event)."""
    with server.engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT domain FROM network_event")]


def eventually(check: Callable[[], bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not true within {within} s"
        time.sleep(0.1)


# --- 14.7: kill -9 loses no event, and each is stored once ---------------------------------


@pytest.mark.timeout(180)
def test_kill_9_right_after_the_answers_loses_no_event(
    server: LiveServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    state, log = tmp_path / "state", tmp_path / "shim.log"
    count = 300
    names = [f"q{i}.example.test" for i in range(count)]
    shim = ShimProcess(server.url, state, upstream.port, log)  # the server is down
    for name in names:  # each a forwarded answer: one event each
        assert shim.rcode(name) == dns.rcode.NOERROR
    assert shim.stop(signal.SIGKILL) == -signal.SIGKILL  # right after the last answer
    server.start()
    again = ShimProcess(server.url, state, upstream.port, log)
    try:
        eventually(lambda: len(stored(server)) >= count)
        time.sleep(2)  # anything sent twice would arrive meanwhile
        domains = stored(server)
        assert sorted(domains) == sorted(names), "every event exactly once"
        db_url = f"sqlite:///{tmp_path / 'server.sqlite'}"
        listed = subprocess.run(
            [sys.executable, "-m", "enforcer", "events", "list", "--count"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "ENFORCER_DATABASE_URL": db_url},
        )  # fmt: skip
        assert listed.stdout.strip() == str(count), listed.stderr
    finally:
        again.stop()


# --- 14.1: a full disk under the spool and the journal --------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted on a fresh directory (unmounted after the test)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
                   check=True)  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Write a file until the file system refuses (ENOSPC)."""
    chunk = b"\0" * 65536
    with (directory / "filler").open("ab", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(chunk)
    with (directory / "filler-tail").open("ab", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 512)


@pytest.mark.timeout(180)
def test_a_full_disk_sends_what_is_spooled_and_counts_what_is_lost(
    server: LiveServer, upstream: FakeUpstream, small_disk: Path, tmp_path: Path
) -> None:
    state, log = small_disk / "state", tmp_path / "shim.log"
    before, during, after = 100, 200, 100
    shim = ShimProcess(server.url, state, upstream.port, log)  # the server is down
    try:
        for i in range(before):
            assert shim.rcode(f"a{i}.example.test") == dns.rcode.NOERROR

        def spooled() -> int:
            with contextlib.closing(sqlite3.connect(state / "events.sqlite")) as db:
                return int(db.execute("SELECT count(*) FROM events").fetchone()[0])

        eventually(lambda: spooled() == before, within=10)
        fill(small_disk)
        for i in range(during):  # enforcement goes on with a full disk
            assert shim.rcode(f"b{i}.example.test") == dns.rcode.NOERROR
        shim.wait_for(lambda: "reporter.journal_write_failed" in shim.log())
        shim.wait_for(lambda: "reporter.spool_write_failed" in shim.log())
        server.start()
        # What was spooled before the disk filled up is sent: cutting a batch writes nothing.
        eventually(lambda: {f"a{i}.example.test" for i in range(before)} <= set(stored(server)))
        # Whatever room the shim's own deletions made is taken again: these stay in memory.
        fill(small_disk)
        for i in range(after):
            assert shim.rcode(f"c{i}.example.test") == dns.rcode.NOERROR
    finally:
        assert shim.stop() == 0, shim.log()[-3000:]
    (stopped,) = shim.records("shim.stopped")
    lost, pending = int(stopped["lost"]), int(stopped["pending"])  # type: ignore[call-overload]
    with contextlib.closing(sqlite3.connect(state / "events.sqlite")) as db:
        (spool_seq,) = db.execute(
            "SELECT coalesce(max(value), 0) FROM counters WHERE name = 'journal_seq'"
        ).fetchone()
    journaled = len(list(journal.replay(state / "journal", spool_seq)))  # for the next start
    domains = stored(server)
    assert len(domains) == len(set(domains)), "nothing stored twice"
    assert lost > 0, "events that were nowhere on disk are reported lost, not 0"
    assert len(domains) + pending + journaled + lost == before + during + after, (
        len(domains), pending, journaled, lost,
    )  # fmt: skip


# --- 14.1: a read-only state directory -----------------------------------------------------


def read_only(state: Path) -> Callable[[list[str]], list[str]]:
    """Run argv in a new mount namespace where `state` is a read-only bind mount."""

    def wrap(argv: list[str]) -> list[str]:
        script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
        return ["unshare", "-m", "sh", "-c", script, str(state), *argv]

    return wrap


@pytest.mark.timeout(180)
def test_a_read_only_state_directory_is_enforced_from_not_set_aside(
    server: LiveServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    import urllib.request

    state, log = tmp_path / "state", tmp_path / "shim.log"
    server.start()
    server.add(Indicator("blocked.example", Action.BLOCK))
    shim = ShimProcess(server.url, state, upstream.port, log)
    shim.wait_for(lambda: shim.rcode("blocked.example") == dns.rcode.NXDOMAIN)
    assert shim.stop() == 0
    before = sorted(p.name for p in state.iterdir())
    server.add(Indicator("later.example", Action.BLOCK))
    metrics = free_port()
    shim = ShimProcess(
        server.url, state, upstream.port, log, wrap=read_only(state), metrics_port=metrics
    )
    try:
        assert shim.rcode("blocked.example") == dns.rcode.NXDOMAIN  # the cached set, at once
        shim.wait_for(lambda: shim.rcode("later.example") == dns.rcode.NXDOMAIN)  # synced
        assert shim.rcode("allowed.example.test") == dns.rcode.NOERROR
        assert "shim.cache_read_only" in shim.log()
        assert "cache_unreadable" not in shim.log() and "state_file_unreadable" not in shim.log()
        page = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read()
        text = page.decode()
        assert 'enforcer_shim_state_degraded{condition="read_only",part="cache"} 1.0' in text
        assert 'enforcer_shim_state_degraded{condition="memory",part="spool"} 1.0' in text
        # The events are kept in memory and sent.
        eventually(lambda: "blocked.example" in stored(server), within=30)
    finally:
        assert shim.stop() == 0
    assert sorted(p.name for p in state.iterdir()) == before, "nothing set aside or changed"


# --- 14.6: a damaged cache, the server away: the last good set stays blocked ----------------


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "emptied":
        path.write_bytes(b"")
    elif how == "cut-short":
        path.write_bytes(data[: len(data) // 3])
    elif how == "pages":
        damaged = bytearray(data)
        for start in range(4096, len(data), 4096 * 3):  # every third page from the second on
            damaged[start : start + 4096] = os.urandom(4096)
        path.write_bytes(bytes(damaged))
    elif how == "and-its-copy":
        path.write_bytes(os.urandom(len(data)))
        copy = path.with_name(path.name + ".last-good")
        copied = bytearray(copy.read_bytes())
        copied[len(copied) // 2 : len(copied) // 2 + 4096] = os.urandom(4096)
        copy.write_bytes(bytes(copied))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["emptied", "cut-short", "pages", "and-its-copy"])
def test_a_damaged_cache_keeps_the_last_good_set_blocked_while_the_server_is_away(
    server: LiveServer, upstream: FakeUpstream, tmp_path: Path, how: str
) -> None:
    count = 3_000
    blocked = [f"b{i:04}.example" for i in range(count)]
    apply_indicators(server.engine, [Indicator(name, Action.BLOCK) for name in blocked])
    server.start()
    state, log = tmp_path / "state", tmp_path / "shim.log"
    shim = ShimProcess(server.url, state, upstream.port, log)
    shim.wait_for(lambda: shim.rcode(blocked[-1]) == dns.rcode.NXDOMAIN)
    assert shim.stop() == 0
    server.stop()
    damage(state / "indicators.sqlite", how)
    shim = ShimProcess(server.url, state, upstream.port, log)  # the server is away
    try:
        answers = [shim.rcode(name) for name in blocked[::10]]
        open_names = [
            n for n, a in zip(blocked[::10], answers, strict=True) if a != dns.rcode.NXDOMAIN
        ]
        if how == "and-its-copy":  # only what a salvage of the damaged copy can read
            assert len(open_names) < len(answers) * 0.1, len(open_names)
        else:
            assert open_names == [], "the last good set stays blocked"
        assert shim.rcode("allowed.example.test") == dns.rcode.NOERROR
        assert "shim.cache_recovered" in shim.log()
    finally:
        assert shim.stop() == 0
