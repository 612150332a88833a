"""What ``enforcer shim --intercept`` adds: TCP connection set-up, set-ups per second and tunnel
throughput through the transparent listener, and the DNS answer time of a diverted query, each
against the same server reached directly in the same run; and the shim's memory with 100,000
indicators.

Everything runs in a fresh network namespace (root; nftables), so the table never touches this
machine's traffic. The origin (a separate process) listens on 10.99.0.80, TCP ports 443 and
8443, and answers DNS on 10.99.0.53, UDP ports 53 and 5353 (every A query: 10.99.0.80, TTL 300).
The shim runs with ``--intercept --intercept-ports 443``, that resolver as its upstream and
``--indicators`` names in its indicator set (real blocklist names, ../shared/data), so TCP 443
goes through the transparent listener (original destination, SNI check, marked relay, process
and user of the client) while 8443 is the same origin direct, and a query to 10.99.0.53:53 is
answered by the shim (diverted) while 5353 is the same resolver asked directly. The client
(another process in the namespace) alternates the two paths:

(a) set-up latency: sequential connections that send a real TLS ClientHello (SNI
    ``allowed.example``) and wait for the origin's 2-byte answer; p50/p99 of each path and the
    difference;
(b) set-ups per second: ``--clients`` concurrent clients doing (a) in a loop for ``--seconds``;
    the shim's and the origin's CPU time per set-up (``/proc/PID/stat``) beside it;
(c) throughput: one connection that uploads ``--megabytes`` MiB after the ClientHello;
(d) DNS: sequential A queries for one name (cached by the shim after the first), p50/p99 of
    each path and the difference.

The shim's resident memory is read after start and its peak (``VmHWM``) after the run. The shim
runs at nice -10, as ``examples/systemd/enforcer-shim-intercept.service`` runs it
(``--shim-nice 0``: at the client's and the origin's priority).

With two cores, client, origin and shim share the machine: ratios are what to read.
``--baseline DIR`` runs everything a second time, alternately with the working tree's shim,
against the shim of another checkout (``git worktree add DIR COMMIT``): before and after in
one run.

    .venv/bin/python benchmarks/intercept.py            (as root)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ORIGIN = "10.99.0.80"
RESOLVER = "10.99.0.53"
SNI = "allowed.example"
DNS_NAME = "cached.example"
_TICKS = os.sysconf("SC_CLK_TCK")


def client_hello() -> bytes:
    """A real ClientHello for `SNI`, as a browser's first bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=SNI)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def dns_query(name: str, query_id: int) -> bytes:
    """An A query for `name` (RD set, no EDNS), as a stub resolver sends it."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    header = query_id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    return header + labels + b"\x00\x00\x01\x00\x01"


class _Resolver(asyncio.DatagramProtocol):
    """Answers every A query with `ORIGIN` (TTL 300): the query's bytes, flags set, one record."""

    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        end = data.index(b"\x00", 12) + 5
        additional = b"\x00\x01" if len(data) > end else b"\x00\x00"  # the query's OPT back
        header = data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00" + additional
        record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + socket.inet_aton(ORIGIN)
        self.transport.sendto(header + data[12:end] + record + data[end:], addr)


def origins(count: int) -> list[str]:
    """The origin's addresses: `ORIGIN` and `count` - 1 more (10.99.1.1, ...)."""
    return [ORIGIN, *(f"10.99.1.{n}" for n in range(1, count))]


async def serve_origin(count: int) -> None:
    """TCP: answer b"ok" to the first bytes, then count the rest and answer the count at EOF,
    on every address of `origins(count)`. UDP 53 and 5353: `_Resolver`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(65536)
            writer.write(b"ok")
            total = 0
            while data := await reader.read(1 << 18):
                total += len(data)
            writer.write(str(total).encode())
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    for port in (53, 5353):
        await loop.create_datagram_endpoint(_Resolver, local_addr=(RESOLVER, port))
    servers = [
        await asyncio.start_server(handle, address, port, backlog=4096)
        for address in origins(count)
        for port in (443, 8443)
    ]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def percentiles(times: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    times = sorted(times)
    return statistics.median(times) * 1e3, times[int(len(times) * 0.99) - 1] * 1e3


async def _setup(port: int, hello: bytes, host: str = ORIGIN) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(hello)
    await reader.readexactly(2)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def _loop(port: int, hello: bytes, deadline: float, hosts: list[str], first: int) -> int:
    done = 0
    while time.perf_counter() < deadline:
        await _setup(port, hello, hosts[(first + done) % len(hosts)])
        done += 1
    return done


def _compare(result: dict[str, float], what: str, times: dict[str, list[float]]) -> None:
    for name, samples in times.items():
        result[f"{what}_{name}_p50_ms"], result[f"{what}_{name}_p99_ms"] = percentiles(samples)
    for level in ("p50", "p99"):
        added = result[f"{what}_intercepted_{level}_ms"] - result[f"{what}_direct_{level}_ms"]
        result[f"{what}_added_{level}_ms"] = added


async def run_client(args: argparse.Namespace) -> dict[str, float]:
    hello = client_hello()
    hosts = origins(args.origins)
    paths = {"intercepted": 443, "direct": 8443}
    for port in paths.values():  # warm up both paths
        for _ in range(50):
            await _setup(port, hello)
    latency: dict[str, list[float]] = {name: [] for name in paths}
    for n in range(args.rounds):
        for name, port in paths.items():
            latency[name].append(await _setup(port, hello, hosts[n % len(hosts)]))
    result: dict[str, float] = {}
    _compare(result, "setup", latency)

    for name, port in paths.items():
        cpu = cpu_seconds(args.shim_pid), cpu_seconds(args.origin_pid)
        deadline = time.perf_counter() + args.seconds
        counts = await asyncio.gather(
            *(_loop(port, hello, deadline, hosts, n) for n in range(args.clients))
        )
        done = sum(counts)
        result[f"{name}_setups_per_s"] = done / args.seconds
        result[f"{name}_shim_cpu_us_per_setup"] = (cpu_seconds(args.shim_pid) - cpu[0]) / done * 1e6
        result[f"{name}_origin_cpu_us_per_setup"] = (
            (cpu_seconds(args.origin_pid) - cpu[1]) / done * 1e6
        )
    result["setups_ratio"] = result["intercepted_setups_per_s"] / result["direct_setups_per_s"]

    chunk = os.urandom(1 << 18)
    for name, port in paths.items():
        reader, writer = await asyncio.open_connection(ORIGIN, port)
        writer.write(hello)
        await reader.readexactly(2)
        start = time.perf_counter()
        for _ in range(args.megabytes * 4):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        count = int(await reader.read())
        result[f"{name}_mib_per_s"] = count / (1 << 20) / (time.perf_counter() - start)
        writer.close()
    result["throughput_ratio"] = result["intercepted_mib_per_s"] / result["direct_mib_per_s"]

    result.update(dns_latency(args.dns_rounds))
    return result


def dns_latency(rounds: int) -> dict[str, float]:
    """(d): a blocking UDP socket per path, one query at a time, the same name each time."""
    paths = {"intercepted": 53, "direct": 5353}
    socks = {}
    for name, port in paths.items():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        sock.connect((RESOLVER, port))
        socks[name] = sock
    times: dict[str, list[float]] = {name: [] for name in paths}
    for n in range(rounds + 50):
        query = dns_query(DNS_NAME, n & 0xFFFF)
        for name, sock in socks.items():
            start = time.perf_counter()
            sock.send(query)
            answer = sock.recv(512)
            elapsed = time.perf_counter() - start
            if answer[:2] != query[:2] or answer[3] & 0x0F:
                raise RuntimeError(f"{name}: a bad answer {answer!r}")
            if n >= 50:  # the first ones warm the shim's cache
                times[name].append(elapsed)
    result: dict[str, float] = {}
    _compare(result, "dns", times)
    return result


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def _vm(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` memory field in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_indicators(state: Path, count: int) -> None:
    """The shim's indicator cache: `count` blocklist names plus blocked.example."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _unbound import load_domains

    from enforcer.models import Action, Indicator
    from enforcer.shim.indicator_cache import IndicatorCache

    names = ["blocked.example", *load_domains(count - 1)] if count > 0 else []
    cache = IndicatorCache(state / "indicators.sqlite")
    cache.apply(1, [Indicator(name, Action.BLOCK) for name in names], (), snapshot=True)
    cache.close()


def run_shim(
    args: argparse.Namespace, inside: list[str], origin: int, src: str | None
) -> dict[str, float]:
    """Start a shim (from the checkout `src`, or this one), run the client, stop the shim."""
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory)
        write_indicators(state, args.indicators)
        log = state / "shim.log"
        env = {**os.environ, "ENFORCER_LOG_FORMAT": "json"}
        if src is not None:
            env["PYTHONPATH"] = src
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        with log.open("wb") as out:
            # As the example unit runs it (Nice=-10), unless --shim-nice says otherwise.
            nice = ["nice", "-n", str(args.shim_nice)] if args.shim_nice else []
            shim = subprocess.Popen(
                [
                    *nice, *inside, *profile, "-m", "enforcer", "shim", "--server", "http://127.0.0.1:9",
                    "--enroll-secret", "s" * 32, "--state-dir", str(state),
                    "--dns-listen", "127.0.0.1:53", "--upstream", f"{RESOLVER}:53",
                    "--intercept", "--intercept-ports", "443",
                ],
                stdout=out, stderr=out, env=env,
                # `-m` puts the working directory first on sys.path, before PYTHONPATH: the
                # baseline's shim must start in its own checkout to import its own code.
                cwd=src or Path(__file__).resolve().parents[1],
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "intercept.installed" not in log.read_text():
                if shim.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the shim did not start:\n{log.read_text()}")
                time.sleep(0.1)
            rss_start = _vm(shim.pid, "VmRSS")
            out = subprocess.run(
                [
                    *inside, __file__, "--role", "client", "--rounds", str(args.rounds),
                    "--clients", str(args.clients), "--seconds", str(args.seconds),
                    "--megabytes", str(args.megabytes), "--dns-rounds", str(args.dns_rounds),
                    "--shim-pid", str(shim.pid), "--origin-pid", str(origin),
                    "--origins", str(args.origins),
                ],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            result: dict[str, float] = json.loads(out)
            result["shim_rss_mib_after_start"] = rss_start
            result["shim_rss_mib_after_run"] = _vm(shim.pid, "VmRSS")
            result["shim_peak_rss_mib"] = _vm(shim.pid, "VmHWM")
            return result
        finally:
            shim.send_signal(signal.SIGTERM)
            try:
                shim.wait(30)
            except subprocess.TimeoutExpired:
                shim.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["main", "origin", "client"], default="main")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--dns-rounds", type=int, default=5000)
    parser.add_argument("--indicators", type=int, default=100_000)
    parser.add_argument(
        "--origins", type=int, default=16,
        help="origin addresses the set-ups are spread over (1: all to one address:port)",
    )  # fmt: skip
    parser.add_argument(
        "--shim-nice", type=int, default=-10,
        help="the shim's nice value (the example systemd unit's: -10; 0: the clients' own)",
    )  # fmt: skip
    parser.add_argument("--baseline", metavar="DIR", help="also run the shim of this checkout")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each shim, alternated")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the shim under cProfile, its stats written to FILE"
    )
    parser.add_argument("--shim-pid", type=int, default=0)
    parser.add_argument("--origin-pid", type=int, default=0)
    args = parser.parse_args()
    if args.role == "origin":
        asyncio.run(serve_origin(args.origins))
        return
    if args.role == "client":
        print(json.dumps(asyncio.run(run_client(args))))
        return
    if os.geteuid() != 0:
        sys.exit("needs root: a network namespace and an nftables table inside it")
    name = f"enf-bench-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    origin: subprocess.Popen[bytes] | None = None
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for address in (*origins(args.origins), RESOLVER):
            _ip("-n", name, "addr", "add", f"{address}/32", "dev", "lo")
        inside = ["ip", "netns", "exec", name, sys.executable]
        origin = subprocess.Popen(
            [*inside, __file__, "--role", "origin", "--origins", str(args.origins)],
            stdout=subprocess.PIPE,
        )
        assert origin.stdout is not None and origin.stdout.readline().strip() == b"ready"
        shims = {"this": None} if args.baseline is None else {"baseline": args.baseline}
        if args.baseline is not None:
            shims["this"] = None
        results: dict[str, list[dict[str, float]]] = {label: [] for label in shims}
        for _ in range(args.repeat):
            for label, src in shims.items():
                results[label].append(run_shim(args, inside, origin.pid, src))
        report(results)
    finally:
        if origin is not None:
            origin.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                origin.wait(5)
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name)


def report(results: dict[str, list[dict[str, float]]]) -> None:
    """One line per figure, one column per shim (the median of its runs)."""
    labels = list(results)
    print(f"{'':36s}" + "".join(f"{label:>12s}" for label in labels))
    for key in results[labels[0]][0]:
        values = [statistics.median(run[key] for run in results[label]) for label in labels]
        print(f"{key:36s}" + "".join(f"{value:12.3f}" for value in values))


if __name__ == "__main__":
    main()
