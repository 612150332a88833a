"""`enforcer shim` as a subprocess against the real server: dig, curl -x, events, restarts.

Everything listens on free ports of 127.0.0.1: the server (uvicorn in a thread), the fake
upstream resolver from conftest, and the shim's DNS and proxy front ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer

from enforcer.cli.shim import check_groups, parse_hostport
from enforcer.models import Action, Indicator
from enforcer.shim.agent import CACHE_FILE, Agent, AgentFailed, AgentSettings, run_agent
from enforcer.shim.dns.answer import DnsSettings
from enforcer.shim.report.reporter import Reporter
from enforcer.shim.report.spool import Spool

from .conftest import FakeUpstream, _bind_pair
from .test_sync import ENROLL_SECRET, LiveServer, free_port

pytestmark = [
    pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def free_dns_port() -> int:
    udp, tcp = _bind_pair()
    port = int(udp.getsockname()[1])
    udp.close()
    tcp.close()
    return port


class Shim:
    """One `enforcer shim` process and its addresses."""

    def __init__(
        self, server: str, state: Path, upstream: int, *extra: str, log_file: Path
    ) -> None:
        self.dns_port = free_dns_port()
        self.proxy_port = free_port()
        self.log_file = log_file
        argv = [
            sys.executable,
            "-m",
            "enforcer",
            "shim",
            "--server",
            server,
            "--enroll-secret",
            ENROLL_SECRET,
            "--state-dir",
            str(state),
            "--dns-listen",
            f"127.0.0.1:{self.dns_port}",
            "--proxy-listen",
            f"127.0.0.1:{self.proxy_port}",
            "--upstream",
            f"127.0.0.1:{upstream}",
            "--sync-wait",
            "5",
            *extra,
        ]
        env = {**os.environ, "ENFORCER_LOG_FORMAT": "json"}
        self._log = log_file.open("ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=self._log, env=env)
        try:
            self.wait_for(lambda: "dns.listening" in self.log() and self.proxy_up())
        except BaseException:
            self.stop()
            raise

    def proxy_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.proxy_port), timeout=1).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the shim exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {within} s; log:\n{self.log()}")
            time.sleep(0.05)

    def dig(self, name: str) -> tuple[str, str]:
        """(status, first answer address) of an A query."""
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(self.dns_port), name, "A", "+tries=1", "+time=2"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else ""
        answers = [line.split()[-1] for line in out.splitlines() if "\tA\t" in line]
        return status, answers[0] if answers else ""

    def curl(self, url: str) -> str:
        return subprocess.run(
            [
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                "-x", f"http://127.0.0.1:{self.proxy_port}", url,
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout  # fmt: skip

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "server.sqlite")
    live.start()
    yield live
    live.stop()
    live.engine.dispose()


def stored_events(server: LiveServer) -> list[tuple[str, str, str]]:
    from enforcer.store.events import list_events

    with server.engine.connect() as conn:
        return [(e.source, e.domain, e.action) for e in list_events(conn, limit=1000)]


@pytest.mark.timeout(120)
def test_the_shim_blocks_resolves_reports_and_restarts_from_its_cache(
    server: LiveServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    server.add(Indicator("blocked.example", Action.BLOCK, app_id="blockedapp"))
    state = tmp_path / "state"
    logs = tmp_path / "shim.log"
    shim = Shim(server.url, state, upstream.port, "--fail-closed", log_file=logs)
    try:
        shim.wait_for(lambda: shim.dig("blocked.example")[0] == "NXDOMAIN")
        assert shim.dig("www.blocked.example")[0] == "NXDOMAIN"
        assert shim.dig("allowed.example.test") == ("NOERROR", "192.0.2.1")
        assert shim.curl("http://blocked.example/") == "403"
        shim.wait_for(
            lambda: (
                {("dns", "blocked.example", "blocked"), ("proxy", "blocked.example", "blocked")}
                <= set(stored_events(server))
            )
        )
        assert ("dns", "allowed.example.test", "allowed") in stored_events(server)
        # A new indicator reaches the running shim without a restart.
        server.add(Indicator("later.example.test", Action.BLOCK))
        shim.wait_for(lambda: shim.dig("later.example.test")[0] == "NXDOMAIN", within=5)
    finally:
        assert shim.stop() == 0
    lines = [json.loads(line) for line in logs.read_text().splitlines() if line.startswith("{")]
    assert {"shim.starting", "sync.applied", "shim.stopped"} <= {line["event"] for line in lines}

    # The server goes away; the restarted shim enforces its cached set at once.
    server.stop()
    again = Shim(server.url, state, upstream.port, "--fail-closed", log_file=logs)
    try:
        assert again.dig("blocked.example")[0] == "NXDOMAIN"
        assert again.dig("later.example.test")[0] == "NXDOMAIN"
        assert again.dig("allowed.example.test") == ("NOERROR", "192.0.2.1")
        assert again.curl("http://blocked.example/") == "403"
    finally:
        assert again.stop() == 0
    assert "sync.failed" in logs.read_text()
    # What the second run saw while the server was down waits in the spool for the next start.
    spool = Spool(state / "events.sqlite")
    pending = spool.cut()
    assert pending is not None
    assert {("dns", "blocked.example", "blocked"), ("proxy", "blocked.example", "blocked")} <= {
        (e["source"], e["domain"], e["action"]) for e in pending.events
    }


@pytest.mark.timeout(60)
def test_fail_closed_refuses_until_a_first_set_arrives(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no server there
    shim = Shim(
        nowhere, tmp_path / "closed", upstream.port, "--fail-closed", log_file=tmp_path / "a"
    )
    try:
        assert shim.dig("allowed.example.test")[0] == "REFUSED"
    finally:
        shim.stop()
    shim = Shim(nowhere, tmp_path / "open", upstream.port, log_file=tmp_path / "b")
    try:
        assert shim.dig("allowed.example.test") == ("NOERROR", "192.0.2.1")
        assert "dns.fail_open" in shim.log()
    finally:
        shim.stop()


@pytest.mark.timeout(60)
def test_a_damaged_cache_is_set_aside_and_the_agent_starts(
    server: LiveServer, tmp_path: Path
) -> None:
    server.add(Indicator("blocked.example", Action.BLOCK))
    state = tmp_path / "state"
    state.mkdir()
    (state / CACHE_FILE).write_bytes(b"this is not a SQLite database" * 100)
    settings = AgentSettings(
        server=server.url,
        enroll_secret=ENROLL_SECRET,
        state_dir=state,
        dns=DnsSettings(listen_host="127.0.0.1", listen_port=0),
        proxy_port=0,
        sync_wait=5,
        notifier=lambda title, body: None,
    )

    async def scenario() -> None:
        agent = Agent(settings)
        await agent.start()
        try:
            deadline = time.monotonic() + 10
            while not agent.matcher.verdict("blocked.example").blocked:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            await agent.stop()

    asyncio.run(scenario())
    assert [p.name for p in state.iterdir() if ".damaged-" in p.name]


def test_command_line_values() -> None:
    assert parse_hostport("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_hostport("[::1]:53") == ("::1", 53)
    assert parse_hostport("192.0.2.53", 53) == ("192.0.2.53", 53)
    assert parse_hostport("::1", 53) == ("::1", 53)
    for bad in ("127.0.0.1", "host:99999", "host:x", ":53"):
        with pytest.raises(typer.BadParameter):
            parse_hostport(bad)
    assert check_groups(["engineering", "eu.sales-2"]) == ("engineering", "eu.sales-2")
    with pytest.raises(typer.BadParameter):
        check_groups(["no spaces"])


@pytest.mark.timeout(30)
def test_an_unexpected_task_failure_stops_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Reporter, "run", broken)
    settings = AgentSettings(
        server=f"http://127.0.0.1:{free_port()}",
        enroll_secret=ENROLL_SECRET,
        state_dir=tmp_path / "state",
        dns=DnsSettings(listen_host="127.0.0.1", listen_port=0),
        proxy_port=0,
        notifier=lambda title, body: None,
    )
    with pytest.raises(AgentFailed):
        asyncio.run(run_agent(settings, asyncio.Event()))


def test_the_shim_serves_prometheus_metrics(
    server: LiveServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    import urllib.request

    server.add(Indicator("blocked.example", Action.BLOCK))
    port = free_port()
    shim = Shim(server.url, tmp_path / "state", upstream.port, "--metrics-listen", f"127.0.0.1:{port}",
                log_file=tmp_path / "shim.log")  # fmt: skip
    try:
        shim.wait_for(lambda: shim.dig("blocked.example")[0] == "NXDOMAIN")
        shim.dig("allowed.example.test")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        assert shim.stop() == 0
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["enforcer_shim_dns_blocked_total"] >= 1
    assert values["enforcer_shim_dns_queries_total"] >= 2
    assert values["enforcer_shim_indicators"] == 1
    assert "enforcer_shim_spool_depth" in values
