"""What ``enforcer shim --intercept`` adds to a TCP connection: set-up latency, set-ups per
second and tunnel throughput through the transparent listener, against the same origin direct.

Everything runs in a fresh network namespace (root; nftables), so the table never touches this
machine's traffic. The origin (a separate process) listens on 10.99.0.80, ports 443 and 8443;
the shim runs with ``--intercept --intercept-ports 443`` and a local indicator set, so port 443
goes through the transparent listener (original destination, process and user lookup, SNI
check, marked relay) and port 8443 is the same origin direct. The client (another process in
the namespace) alternates the two paths:

(a) latency: sequential connections that send a real TLS ClientHello (SNI ``allowed.example``)
    and wait for the origin's 2-byte answer; p50/p99 of each path and the difference;
(b) set-ups per second: ``--clients`` concurrent clients doing (a) in a loop for ``--seconds``;
(c) throughput: one connection that uploads ``--megabytes`` MiB after the ClientHello.

With two cores, client, origin and shim share the machine: ratios are what to read.

    sudo .venv/bin/python benchmarks/intercept.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORIGIN = "10.99.0.80"
SNI = "allowed.example"


def client_hello() -> bytes:
    """A real ClientHello for `SNI`, as a browser's first bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=SNI)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def serve_origin() -> None:
    """Answer b"ok" to the first bytes, then count the rest and answer the count at EOF."""

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

    servers = [
        await asyncio.start_server(handle, ORIGIN, port, backlog=4096) for port in (443, 8443)
    ]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


async def _setup(port: int, hello: bytes) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(ORIGIN, port)
    writer.write(hello)
    await reader.readexactly(2)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def _loop(port: int, hello: bytes, deadline: float) -> int:
    done = 0
    while time.perf_counter() < deadline:
        await _setup(port, hello)
        done += 1
    return done


async def run_client(rounds: int, clients: int, seconds: float, megabytes: int) -> dict[str, float]:
    hello = client_hello()
    paths = {"intercepted": 443, "direct": 8443}
    for port in paths.values():  # warm up both paths
        for _ in range(50):
            await _setup(port, hello)
    latency: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, port in paths.items():
            latency[name].append(await _setup(port, hello))
    result: dict[str, float] = {}
    for name, times in latency.items():
        times.sort()
        result[f"{name}_p50_ms"] = statistics.median(times) * 1e3
        result[f"{name}_p99_ms"] = times[int(len(times) * 0.99) - 1] * 1e3
    result["added_p50_ms"] = result["intercepted_p50_ms"] - result["direct_p50_ms"]
    result["added_p99_ms"] = result["intercepted_p99_ms"] - result["direct_p99_ms"]

    for name, port in paths.items():
        deadline = time.perf_counter() + seconds
        counts = await asyncio.gather(*(_loop(port, hello, deadline) for _ in range(clients)))
        result[f"{name}_setups_per_s"] = sum(counts) / seconds
    result["setups_ratio"] = result["intercepted_setups_per_s"] / result["direct_setups_per_s"]

    chunk = os.urandom(1 << 18)
    for name, port in paths.items():
        reader, writer = await asyncio.open_connection(ORIGIN, port)
        writer.write(hello)
        await reader.readexactly(2)
        start = time.perf_counter()
        for _ in range(megabytes * 4):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        count = int(await reader.read())
        result[f"{name}_mib_per_s"] = count / (1 << 20) / (time.perf_counter() - start)
        writer.close()
    result["throughput_ratio"] = result["intercepted_mib_per_s"] / result["direct_mib_per_s"]
    return result


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["main", "origin", "client"], default="main")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--megabytes", type=int, default=512)
    args = parser.parse_args()
    if args.role == "origin":
        asyncio.run(serve_origin())
        return
    if args.role == "client":
        result = asyncio.run(run_client(args.rounds, args.clients, args.seconds, args.megabytes))
        print(json.dumps(result))
        return
    if os.geteuid() != 0:
        sys.exit("needs root: a network namespace and an nftables table inside it")
    name = f"enf-bench-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{ORIGIN}/32", "dev", "lo")
        inside = ["ip", "netns", "exec", name, sys.executable]
        origin = subprocess.Popen([*inside, __file__, "--role", "origin"], stdout=subprocess.PIPE)
        procs.append(origin)
        assert origin.stdout is not None and origin.stdout.readline().strip() == b"ready"
        with tempfile.TemporaryDirectory() as state:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from enforcer.models import Action, Indicator
            from enforcer.shim.indicator_cache import IndicatorCache

            cache = IndicatorCache(Path(state) / "indicators.sqlite")
            cache.apply(1, [Indicator("blocked.example", Action.BLOCK)], (), snapshot=True)
            cache.close()
            log = Path(state) / "shim.log"
            with log.open("wb") as out:
                shim = subprocess.Popen(
                    [
                        *inside, "-m", "enforcer", "shim", "--server", "http://127.0.0.1:9",
                        "--enroll-secret", "s" * 32, "--state-dir", state,
                        "--dns-listen", "127.0.0.1:53", "--upstream", "127.0.0.1:5353",
                        "--intercept", "--intercept-ports", "443",
                    ],
                    stdout=out,
                    stderr=out,
                    env={**os.environ, "ENFORCER_LOG_FORMAT": "json"},
                )  # fmt: skip
            procs.append(shim)
            deadline = time.monotonic() + 30
            while "intercept.installed" not in log.read_text():
                if shim.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the shim did not start:\n{log.read_text()}")
                time.sleep(0.1)
            rss = subprocess.run(
                ["ps", "-o", "rss=", "-p", str(shim.pid)], capture_output=True, text=True
            ).stdout.strip()
            out = subprocess.run(
                [
                    *inside, __file__, "--role", "client", "--rounds", str(args.rounds),
                    "--clients", str(args.clients), "--seconds", str(args.seconds),
                    "--megabytes", str(args.megabytes),
                ],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            result = json.loads(out)
            result["shim_rss_mib_after_start"] = int(rss or 0) / 1024
            for key, value in result.items():
                print(f"{key:32s} {value:10.3f}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name)


if __name__ == "__main__":
    main()
