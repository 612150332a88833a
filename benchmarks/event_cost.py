"""CPU time the shim's DNS front end spends per blocked answer, with and without its events.

dnsperf against a shim on the shared 2-core VM measures mostly the machine's load (the ratio to
Unbound moved from 0.23x to 0.35x between back-to-back runs of the same code); this times the
hot path in process, in CPU time (`time.process_time`: this process's user and system time,
the journal's ``write(2)`` included), over the same 64 queries for blocked names answered
again and again:

- ``off``: no event sink;
- ``memory``: the reporter without its journal (the event is only appended to a list);
- ``journal``: the reporter with its journal, one ``write(2)`` per event (`Reporter.on_event`);
- ``batch``: the same, as the UDP listener drives it since issue 14.7: `Reporter.hold` before
  a pass of 64 answers, `Reporter.commit` (one ``write(2)``) after them.

The flush to the spool never runs here (it is not on the answer's path); each mode gets a fresh
reporter and journal in a temporary directory. Prints the minimum and median of the rounds.

    .venv/bin/python benchmarks/event_cost.py [--answers 64000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import dns.message

from enforcer.decide.matcher import MatchEntry, Matcher
from enforcer.models import Action
from enforcer.shim.dns.answer import DnsFrontEnd
from enforcer.shim.report.identity import DeviceIdentity
from enforcer.shim.report.reporter import Reporter
from enforcer.shim.report.spool import Spool

DEVICE = DeviceIdentity("bench", "bench-host", "Linux", "alice", ("10.0.0.5",), ())
MODES = ("off", "memory", "journal", "batch")
PASS = 64
"""Datagrams the UDP listener answers per wake-up of the event loop (`_UDP_BATCH`)."""


async def per_answer(mode: str, answers: int, work: Path) -> float:
    """Microseconds of CPU time per blocked answer in `mode`."""
    matcher = Matcher([MatchEntry("blocked.test", Action.BLOCK, "evilapp")])
    queries = [dns.message.make_query(f"n{i}.blocked.test", "A").to_wire() for i in range(PASS)]
    reporter = None
    if mode == "off":
        frontend = DnsFrontEnd(matcher)
    else:
        journal = {"journal_dir": work / "journal"} if mode != "memory" else {}
        reporter = Reporter(Spool(work / "events.sqlite"), DEVICE, None, flush_events=10**9,
                            **journal)  # fmt: skip
        frontend = DnsFrontEnd(matcher, on_event=reporter.on_event)
    answer = frontend.answer
    client = ("127.0.0.1", 5353)
    passes = max(1, answers // PASS)
    started = time.process_time()
    for _ in range(passes):
        if mode == "batch" and reporter is not None:
            reporter.hold()
        for query in queries:
            answer(query, client, False)
        if mode == "batch" and reporter is not None:
            reporter.commit()
        if reporter is not None and len(reporter._buffer) > 10_000:
            reporter._buffer.clear()  # the flush's work, which is not timed here
    spent = time.process_time() - started
    if reporter is not None and reporter.journal is not None:
        reporter.journal.close()
    return spent / (passes * PASS) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=64_000, help="answers per mode and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="event-cost-") as tmp:
        for round_ in range(args.rounds):
            for mode in MODES:
                work = Path(tmp) / f"{mode}-{round_}"
                work.mkdir()
                results[mode].append(asyncio.run(per_answer(mode, args.answers, work)))
    print(f"CPU time per blocked answer, {args.rounds} rounds of {args.answers:,} answers")
    for mode, values in results.items():
        values.sort()
        print(f"  {mode:8} min {values[0]:6.2f} us   median {values[len(values) // 2]:6.2f} us")


if __name__ == "__main__":
    main()
