"""DNS latency while a large indicator delta is applied to the running server, vs at rest.

The shim's DNS server runs in a subprocess with ``--count`` blocked domains. This process sends
queries at a fixed rate (open loop, ``--rate`` per second, so a stall shows up in every query it
delays, not in one) and records each answer's latency from the moment the query was due. After
a few seconds at rest it signals the server (SIGUSR1) to apply a delta of ``--delta`` new
blocked domains with the sync client's own code: the JSON body the server sends, parsed by
`enforcer.shim.sync.receive_update` and applied by `enforcer.shim.sync.DeviceIndicators.apply`,
both in steps of ``--step`` seconds of work with a yield to the event loop between steps (the
write to the on-disk cache is left out). ``--compare-json-loads`` adds a run that parses with
`json.loads` in a worker thread, as the shim did before. Printed: p50/p99/max latency at rest and
during the delta, applied in steps and, for contrast, in one step.

    .venv/bin/python benchmarks/dns_stall.py --count 1000000 --delta 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
from _unbound import FakeUpstream, free_port, load_domains, wait_answering


def serve(
    domains_file: Path, port: int, upstream_port: int, delta: int, step: float, parser: str
) -> None:
    """The server: load the domains, serve, apply the delta on SIGUSR1 and print its duration."""
    from enforcer.decide.matcher import Matcher
    from enforcer.models import Action
    from enforcer.shim import sync
    from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
    from enforcer.shim.dns.server import run_dns
    from enforcer.wire.indicators import delta_body, sync_entry_json

    matcher = Matcher()
    with domains_file.open() as lines:
        matcher.add_domains((line.rstrip("\n") for line in lines), Action.BLOCK, "benchmark")
    # The delta as the server sends it; the sync client's own parse (in a worker thread) and
    # apply (paced on the loop). Only the write to the on-disk cache is left out.
    body = delta_body(
        1,
        "0" * 32 + ".0",
        (
            sync_entry_json(f"new{i}.delta{i % 100}.example", "", "Block", "Medium", "", False, "")
            for i in range(delta)
        ),
        (),
    )
    held = sync.DeviceIndicators(groups=(), step=step)

    async def receive(content: bytes) -> sync.Update:
        if parser == "json":
            # For contrast: json.loads in a worker thread, as the shim parsed before.
            return await asyncio.to_thread(lambda: sync.parse_update(json.loads(content)))
        return await sync.receive_update(content, step)

    async def apply() -> None:
        started = time.perf_counter()
        update = await receive(body)
        await held.apply(update, matcher)
        print(f"delta {time.perf_counter() - started:.4f}", flush=True)

    async def main() -> None:
        frontend = DnsFrontEnd(matcher, DnsSettings(upstreams=(("127.0.0.1", upstream_port),)))
        handle = await run_dns(frontend, "127.0.0.1", port)
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        loop.add_signal_handler(signal.SIGUSR1, lambda: tasks.add(loop.create_task(apply())))
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        handle.close()

    asyncio.run(main())


class Prober:
    """Sends one query every 1/rate s from one socket; records (due time, latency) per answer."""

    def __init__(self, port: int, names: list[str], rate: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.wires = [dns.message.make_query(n, "A").to_wire() for n in names]
        self.interval = 1.0 / rate
        self.due: dict[int, float] = {}
        self.samples: list[tuple[float, float]] = []
        self.running = True
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._recv)]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        next_due = time.monotonic()
        i = 0
        while self.running:
            now = time.monotonic()
            if now < next_due:
                time.sleep(next_due - now)
            qid = i & 0xFFFF
            self.due[qid] = next_due
            wire = self.wires[i % len(self.wires)]
            with contextlib.suppress(OSError):
                self.sock.send(qid.to_bytes(2, "big") + wire[2:])
            i += 1
            next_due += self.interval

    def _recv(self) -> None:
        while self.running:
            try:
                wire = self.sock.recv(4096)
            except OSError:
                continue
            now = time.monotonic()
            due = self.due.pop(int.from_bytes(wire[:2], "big"), None)
            if due is not None:
                self.samples.append((due, now - due))

    def window(self, start: float, end: float) -> list[float]:
        return sorted(lat for due, lat in self.samples if start <= due < end)

    def close(self) -> None:
        self.running = False
        for t in self._threads:
            t.join(2)
        self.sock.close()


def stats(latencies: list[float]) -> str:
    if not latencies:
        return "no answers"

    def ms(q: float) -> str:
        return f"{latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000:7.2f} ms"

    return f"n={len(latencies):>6}  p50={ms(0.5)}  p99={ms(0.99)}  max={ms(1.0)}"


def scenario(
    domains_file: Path,
    names: list[str],
    upstream: FakeUpstream,
    args: argparse.Namespace,
    step: float,
    parser: str,
) -> tuple[str, str, float]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(domains_file),
            "--port",
            str(port),
            "--upstream-port",
            str(upstream.port),
            "--delta",
            str(args.delta),
            "--step",
            str(step),
            "--parser",
            parser,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_answering(port, names[0], time.monotonic() + 600)
        prober = Prober(port, names, args.rate)
        time.sleep(1.0)  # warm-up: fill the cache for the allowed names
        rest_start = time.monotonic()
        time.sleep(args.rest)
        triggered = time.monotonic()
        server.send_signal(signal.SIGUSR1)
        assert server.stdout is not None
        line = server.stdout.readline()
        while line and not line.startswith("delta "):  # skip the server's log lines
            line = server.stdout.readline()
        took = float(line.split()[1])
        time.sleep(0.5)
        prober.close()
        rest = stats(prober.window(rest_start, triggered))
        during = stats(prober.window(triggered, triggered + took + 0.01))
        return rest, during, took
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--delta", type=int, default=100_000)
    parser.add_argument("--step", type=float, default=0.001)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--rest", type=float, default=3.0)
    parser.add_argument(
        "--compare-json-loads",
        action="store_true",
        help="also run the delta parsed by json.loads in one call (the shim's parser before)",
    )
    parser.add_argument("--parser", default="piecewise", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream_port, args.delta, args.step, args.parser)
        return

    domains = load_domains(args.count)
    # Half blocked names, half allowed names answered from the cache (filled during warm-up).
    blocked = domains[:: max(1, len(domains) // 500)][:500]
    allowed = [f"a{i}.allowed.example" for i in range(len(blocked))]
    names = [name for pair in zip(blocked, allowed, strict=True) for name in pair]
    upstream = FakeUpstream()
    try:
        with tempfile.TemporaryDirectory(prefix="dns-stall-") as tmp:
            domains_file = Path(tmp) / "domains.txt"
            domains_file.write_text("\n".join(domains) + "\n")
            print(
                f"indicators: {len(domains):,}; delta: {args.delta:,} added; "
                f"probe rate: {args.rate}/s"
            )
            runs = [
                (f"in {args.step * 1000:g} ms steps", args.step, "piecewise"),
                ("one step", 3600.0, "piecewise"),
            ]
            if args.compare_json_loads:
                runs.insert(1, (f"json.loads, {args.step * 1000:g} ms steps", args.step, "json"))
            for label, step, how in runs:
                rest, during, took = scenario(domains_file, names, upstream, args, step, how)
                print(f"{label}: delta applied in {took * 1000:.0f} ms")
                print(f"  at rest:      {rest}")
                print(f"  during delta: {during}")
    finally:
        upstream.close()


if __name__ == "__main__":
    main()
