"""Fixtures for interception tests: a network namespace with its own "internet", and the shim.

Every test runs in a fresh network namespace (``ip netns add``), so the nftables table the shim
installs never touches this machine's own traffic. Inside it, addresses on the namespace's
loopback stand for hosts on the internet: a resolver (10.99.0.53) and a web server
(10.99.0.80, fd00:99::80) served by ``origin.py``. The shim runs with ``--intercept`` and a
local indicator set (its cache file, written before start; no server is needed: events stay in
its spool, where the tests read them). Clients run as ``nobody`` through ``setpriv`` and are
configured with nothing: no proxy, no resolver but the one they name.

A namespace, and every process in it, is deleted when its fixture ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from enforcer.models import Action, Indicator
from enforcer.shim.indicator_cache import IndicatorCache

ORIGIN = Path(__file__).with_name("origin.py")
RESOLVER = "10.99.0.53"
WEB4 = "10.99.0.80"
WEB6 = "fd00:99::80"
NAMES = ("allowed.example", "blocked.example", "warn.example")
INDICATORS = (
    Indicator("blocked.example", Action.BLOCK, app_id="blockedapp"),
    Indicator("warn.example", Action.WARN, app_id="warnapp"),
)
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def _why_not() -> str | None:
    """Why these tests cannot run here, or None."""
    if sys.platform != "linux":
        return "interception is Linux only"
    if os.geteuid() != 0:
        return "network namespaces and nftables need root"
    for tool in ("ip", "nft", "setpriv", "dig", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (nft: apt-get install nftables)"
    return None


@dataclass
class Netns:
    """A network namespace and helpers to run things inside it."""

    name: str
    shared: Path
    """A directory every user may read (CA certificate, client scripts)."""
    ca: trustme.CA
    origin_log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *argv: str, nobody: bool = False) -> list[str]:
        return ["ip", "netns", "exec", self.name, *(NOBODY if nobody else []), *argv]

    def run(
        self, *argv: str, nobody: bool = False, input: bytes | None = None, timeout: float = 20
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*argv, nobody=nobody), input=input, capture_output=True, timeout=timeout
        )

    def hits(self, kind: str) -> list[dict[str, object]]:
        """What reached the origin servers, of one kind (dns, http, udp443, tcp853, udp853)."""
        if not self.origin_log.exists():
            return []
        lines = self.origin_log.read_text().splitlines()
        return [hit for hit in map(json.loads, lines) if hit["kind"] == kind]

    def table(self) -> str | None:
        result = self.run("nft", "list", "table", "inet", "enforcer")
        return result.stdout.decode() if result.returncode == 0 else None

    def dig(self, name: str, *options: str, server: str = RESOLVER) -> tuple[str, list[str]]:
        """(status, answers) of an A query as nobody, asking `server` directly."""
        out = self.run(
            "dig", f"@{server}", name, "A", "+tries=1", "+time=2", *options, nobody=True
        ).stdout.decode()
        status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else ""
        answers = [line.split()[-1] for line in out.splitlines() if "\tA\t" in line]
        return status, answers

    def curl(self, url: str, *options: str, body: bytes | None = None) -> tuple[int, str, bytes]:
        """(exit code, HTTP status, body) of curl as nobody, with no proxy, pinned to the
        web server's address (IPv6 when the options say ``-6``)."""
        host = url.split("/")[2]
        port = "443" if url.startswith("https") else "80"
        address = f"[{WEB6}]" if "-6" in options else WEB4
        argv = [
            "curl", "-s", "--noproxy", "*", "--max-time", "5",
            "--cacert", str(self.shared / "ca.pem"),
            "--resolve", f"{host}:{port}:{address}",
            "-w", "\n%{http_code}", *options, url,
        ]  # fmt: skip
        if body is not None:
            argv += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
        result = self.run(*argv, nobody=True, input=body)
        payload, _, status = result.stdout.rpartition(b"\n")
        return result.returncode, status.decode(), payload


@pytest.fixture
def netns() -> Iterator[Netns]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    name = f"enf-{secrets.token_hex(4)}"
    added = _run("ip", "netns", "add", name, check=False)
    if added.returncode != 0:
        pytest.skip(f"the kernel refused a network namespace: {added.stderr.strip()}")
    shared = Path(tempfile.mkdtemp(prefix="enforcer-intercept-"))
    etc = Path("/etc/netns") / name
    space: Netns | None = None
    try:
        shared.chmod(0o755)
        # `ip netns exec` shows this file as /etc/resolv.conf: lookups of the processes inside
        # (the shim's own hostname lookup too) go to the namespace's resolver, not the host's.
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(f"nameserver {RESOLVER}\noptions timeout:1 attempts:1\n")
        for argv in (
            ("link", "set", "lo", "up"),
            ("addr", "add", f"{RESOLVER}/32", "dev", "lo"),
            ("addr", "add", f"{WEB4}/32", "dev", "lo"),
            ("-6", "addr", "add", f"{WEB6}/128", "dev", "lo", "nodad"),
            # Every other address is "somewhere on the internet", reachable through lo: a
            # client asking 8.8.8.8 must find a route before the table can divert it.
            ("route", "add", "default", "dev", "lo"),
            ("-6", "route", "add", "default", "dev", "lo"),
        ):
            _run("ip", "-n", name, *argv)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(shared / "ca.pem"))
        (shared / "ca.pem").chmod(0o644)
        space = Netns(name, shared, ca, shared / "origin.jsonl")
        yield space
    finally:
        for proc in space.procs if space is not None else []:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run("ip", "netns", "del", name, check=False)
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(etc, ignore_errors=True)


@pytest.fixture
def origin(netns: Netns) -> Netns:
    """The namespace with its resolver and web servers running."""
    cert = netns.ca.issue_cert(*NAMES, WEB4, WEB6)
    cert_file, key_file = netns.shared / "origin.pem", netns.shared / "origin.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    proc = subprocess.Popen(
        netns.argv(
            sys.executable, str(ORIGIN), str(netns.origin_log), str(cert_file), str(key_file)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    netns.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == b"ready", line + proc.stdout.read()
    return netns


@dataclass
class Shim:
    """One ``enforcer shim --intercept`` process inside the namespace."""

    netns: Netns
    state: Path
    proc: subprocess.Popen[bytes]
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the shim exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {within} s; log:\n{self.log()}")
            time.sleep(0.05)

    def events(self) -> list[dict[str, object]]:
        """Events the shim spooled (it has no server to send them to)."""
        path = self.state / "events.sqlite"
        if not path.exists():
            return []
        with sqlite3.connect(path) as db:
            return [json.loads(body) for (body,) in db.execute("SELECT body FROM events")]

    def wait_event(self, check: Callable[[dict[str, object]], bool]) -> dict[str, object]:
        found: list[dict[str, object]] = []
        self.wait_for(lambda: bool(found.extend(e for e in self.events() if check(e)) or found))
        return found[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def start_shim(origin: Netns, tmp_path: Path) -> Iterator[Callable[..., Shim]]:
    """``start_shim(*extra_options)``: the shim with --intercept in the namespace, stopped after."""
    shims: list[Shim] = []

    def start(*extra: str) -> Shim:
        state = tmp_path / f"state{len(shims)}"
        state.mkdir()
        cache = IndicatorCache(state / "indicators.sqlite")
        cache.apply(1, INDICATORS, (), snapshot=True)
        cache.close()
        log_file = tmp_path / f"shim{len(shims)}.log"
        argv = origin.argv(
            sys.executable, "-m", "enforcer", "shim",
            "--server", "http://127.0.0.1:9",
            "--enroll-secret", "s" * 32,
            "--state-dir", str(state),
            "--dns-listen", "127.0.0.1:53",
            "--proxy-listen", "127.0.0.1:3128",
            "--upstream", RESOLVER,
            "--intercept", *extra,
        )  # fmt: skip
        env = {**os.environ, "ENFORCER_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        with log_file.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
        shim = Shim(origin, state, proc, log_file)
        origin.procs.append(proc)
        shims.append(shim)
        shim.wait_for(lambda: "intercept.installed" in shim.log())
        return shim

    try:
        yield start
    finally:
        for shim in shims:
            shim.stop()
