"""Queries per second, memory and start-up of the shim's DNS server against Unbound with an RPZ.

Both peers hold the same ``--count`` blocked domains (real blocklist names plus synthetic
subdomains): the shim in its matcher, Unbound (Debian, one thread) as a response policy zone
(NXDOMAIN for each name and its subdomains). Then ``dnsperf -c 4 -l 10`` runs against each, one
after the other, for

(a) blocked names: 100,000 queries, half blocked names, half subdomains of blocked names;
(b) one allowed name already in the cache: both peers forward to the same local fake
    authoritative server (TTL 3600), which is queried once to fill their caches.

The peers take turns ``--rounds`` times (the machine is shared, so one run can be unlucky) and
the round with the median ratio is reported. It prints qps of each and the ratio shim/Unbound,
resident memory of each after loading (ps -o rss=) and start-up time (process start until it
answers its first query, which for Unbound includes loading the zone).

    .venv/bin/python benchmarks/dns_qps.py --count 1000000

``--events memory|journal`` adds the shim's event reporting (every blocked answer is an event),
without and with the write-ahead journal that makes each event survive a kill -9.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
from _unbound import FakeUpstream, free_port, load_domains, rss_kib, start_unbound, wait_answering

ALLOWED_NAME = "allowed.example"


def serve(domains_file: Path, port: int, upstream_port: int, events: str) -> None:
    """The shim's side: load the domains into a matcher and serve DNS (runs in a subprocess).

    `events`: "off" (no event sink), "memory" (the agent's reporter and spool, without the
    write-ahead journal) or "journal" (the reporter as `enforcer shim` runs it).
    """
    from enforcer.decide.matcher import Matcher
    from enforcer.models import Action
    from enforcer.shim.dns.answer import DnsFrontEnd, DnsSettings
    from enforcer.shim.dns.server import serve as serve_dns
    from enforcer.shim.report.identity import load_identity
    from enforcer.shim.report.reporter import Reporter
    from enforcer.shim.report.spool import Spool

    matcher = Matcher()
    with domains_file.open() as lines:
        matcher.add_domains((line.rstrip("\n") for line in lines), Action.BLOCK, "benchmark")
    settings = DnsSettings(upstreams=(("127.0.0.1", upstream_port),))

    async def run() -> None:
        if events == "off":
            await serve_dns(DnsFrontEnd(matcher, settings), "127.0.0.1", port)
            return
        state = domains_file.parent / "state"
        # No keyword without the journal, so that an older checkout runs it too (PYTHONPATH).
        journal = {"journal_dir": state / "journal"} if events == "journal" else {}
        reporter = Reporter(Spool(state / "events.sqlite"), load_identity(state), None,
                            **journal)  # fmt: skip
        flushing = asyncio.create_task(reporter.run())
        frontend = DnsFrontEnd(matcher, settings, on_event=reporter.on_event)
        frontend.event_batch = reporter  # as `enforcer shim` (an older checkout ignores it)
        try:
            await serve_dns(frontend, "127.0.0.1", port)
        finally:
            flushing.cancel()

    asyncio.run(run())


def dnsperf(port: int, queries: Path, seconds: int, clients: int) -> float:
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-c",
            str(clients),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    assert qps is not None, out
    print(f"    dnsperf: {float(qps.group(1)):,.0f} qps, lost {lost.group(1) if lost else '?'}")
    return float(qps.group(1))


def check_rcode(port: int, name: str, expected: int) -> None:
    response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    if response.rcode() != expected:
        raise SystemExit(f"{name} on port {port}: {dns.rcode.to_text(response.rcode())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternate the peers this many times (noise)"
    )
    parser.add_argument(
        "--events",
        choices=("off", "memory", "journal"),
        default="off",
        help="the shim's event reporting: none (default), without or with the journal",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream_port, args.events)
        return

    domains = load_domains(args.count)
    upstream = FakeUpstream()
    with tempfile.TemporaryDirectory(prefix="dns-qps-") as tmp:
        work = Path(tmp)
        domains_file = work / "domains.txt"
        domains_file.write_text("\n".join(domains) + "\n")
        rng = random.Random(1)
        blocked_q = work / "blocked.txt"
        with blocked_q.open("w") as out:
            for i in range(100_000):
                name = rng.choice(domains)
                out.write(f"{name} A\n" if i % 2 else f"www.{name} A\n")
        allowed_q = work / "allowed.txt"
        allowed_q.write_text(f"{ALLOWED_NAME} A\n")

        port = free_port()
        started = time.monotonic()
        shim = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(domains_file),
                "--port",
                str(port),
                "--upstream-port",
                str(upstream.port),
                "--events",
                args.events,
            ],
        )
        unbound = None
        try:
            shim_start = wait_answering(port, domains[0], started + 600) - started
            unbound, uport, unbound_start = start_unbound(work, domains, upstream.port)
            for p in (port, uport):
                check_rcode(p, domains[-1], dns.rcode.NXDOMAIN)
                check_rcode(p, "x.y." + domains[len(domains) // 2], dns.rcode.NXDOMAIN)
                check_rcode(p, ALLOWED_NAME, dns.rcode.NOERROR)
            shim_rss, unbound_rss = rss_kib(shim.pid), rss_kib(unbound.pid)
            results: dict[str, list[tuple[float, float]]] = {}
            for round_ in range(1, args.rounds + 1):
                for case, queries in (("blocked", blocked_q), ("allowed, cached", allowed_q)):
                    print(f"round {round_}, {case}:")
                    print("  shim")
                    s = dnsperf(port, queries, args.seconds, args.clients)
                    print("  unbound")
                    u = dnsperf(uport, queries, args.seconds, args.clients)
                    results.setdefault(case, []).append((s, u))
            shim_rss_after, unbound_rss_after = rss_kib(shim.pid), rss_kib(unbound.pid)
        finally:
            shim.terminate()
            if unbound is not None:
                unbound.terminate()
                unbound.wait(30)
            shim.wait(30)
            upstream.close()

    print()
    print(
        f"indicators: {len(domains):,}; dnsperf -l {args.seconds} -c {args.clients}; "
        f"shim events: {args.events}"
    )
    print(f"rounds: {args.rounds} (qps: the round with the median ratio)")
    print(f"{'':26}{'shim':>12}{'unbound':>12}{'shim/unbound':>14}")
    for case, pairs in results.items():
        s, u = sorted(pairs, key=lambda pair: pair[0] / pair[1])[len(pairs) // 2]
        print(f"{'qps ' + case:26}{s:>12,.0f}{u:>12,.0f}{s / u:>13.2f}x")
    print(
        f"{'RSS after load (MiB)':26}{shim_rss / 1024:>12,.0f}{unbound_rss / 1024:>12,.0f}"
        f"{shim_rss / unbound_rss:>13.2f}x"
    )
    print(
        f"{'RSS after runs (MiB)':26}{shim_rss_after / 1024:>12,.0f}"
        f"{unbound_rss_after / 1024:>12,.0f}{shim_rss_after / unbound_rss_after:>13.2f}x"
    )
    print(
        f"{'start-up to 1st answer (s)':26}{shim_start:>12.2f}{unbound_start:>12.2f}"
        f"{shim_start / unbound_start:>13.2f}x"
    )
    print(f"fake upstream queries: {upstream.queries}")


if __name__ == "__main__":
    main()
