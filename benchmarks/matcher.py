"""Matcher throughput and memory with many indicators.

Builds a matcher of ``--count`` blocked domains (real blocklist names plus synthetic subdomains),
then times lookups of a random mix: a third blocked names, a third subdomains of blocked names,
a third names that match nothing. Memory per indicator is the tracemalloc delta of building the
matcher (keys and dict), divided by the count.

    .venv/bin/python benchmarks/matcher.py --count 1000000
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc

from _unbound import load_domains

from enforcer.decide.matcher import Matcher
from enforcer.models import Action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=1_000_000)
    args = parser.parse_args()

    domains = load_domains(args.count)
    rng = random.Random(42)
    queries = []
    for i in range(args.lookups):
        kind = i % 3
        if kind == 0:
            queries.append(rng.choice(domains))
        elif kind == 1:
            queries.append(f"www{i}.{rng.choice(domains)}")
        else:
            queries.append(f"host{i}.unmatched{i % 5000}.example")
    rng.shuffle(queries)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    matcher = Matcher()
    matcher.add_domains(domains, Action.BLOCK, "benchmark-app")
    load_s = time.perf_counter() - started
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    verdict = matcher.verdict_normalized
    started = time.perf_counter()
    blocked = 0
    for name in queries:
        if verdict(name).action is not None:
            blocked += 1
    hot_s = time.perf_counter() - started

    full = matcher.verdict
    started = time.perf_counter()
    for name in queries:
        full(name)
    full_s = time.perf_counter() - started

    print(f"indicators:                         {len(matcher):,}")
    print(f"bulk load (add_domains):            {load_s:.2f} s ({len(matcher) / load_s:,.0f}/s)")
    print(f"memory per indicator (tracemalloc): {(after - before) / len(matcher):.0f} bytes")
    print(f"matched in the mix:                 {blocked / len(queries):.0%}")
    print(f"verdict_normalized lookups/s:       {len(queries) / hot_s:,.0f}")
    print(f"verdict (with normalize) lookups/s: {len(queries) / full_s:,.0f}")


if __name__ == "__main__":
    main()
