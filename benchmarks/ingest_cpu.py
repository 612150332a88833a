"""CPU time of one upload (`ingest_files` alone) on a given log, for comparing trees.

Wall-clock rates (benchmarks/ingest.py) move with the machine's load; the process CPU time of
the upload moves less. Run it for each tree with ``PYTHONPATH`` pointing at that tree,
alternating trees, on the same log (a fresh SQLite store each run; the best of ``--repeat``):

    python benchmarks/ingest_cpu.py --write squid --lines 1000000 /tmp/squid.log   # the log, once
    PYTHONPATH=/tmp/wt-old:/tmp/wt-old/benchmarks python benchmarks/ingest_cpu.py squid /tmp/squid.log
    python benchmarks/ingest_cpu.py squid /tmp/squid.log
    python benchmarks/ingest_cpu.py squid /tmp/squid.log --catalog /tmp/wt-old/enforcer/catalog/data

``--catalog`` loads another catalog (to tell the code's cost from the catalog's: the share of
lines that go to catalog apps depends on it).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from _store import fresh_store

import enforcer
from enforcer.catalog import load_catalog
from enforcer.discovery.ingest import ingest_files


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("format", help="squid or zeek (with --write: the log to write)")
    parser.add_argument("log", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--catalog", type=Path, default=None, help="a catalog data directory")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument("--write", action="store_true", help="write the benchmark's log first")
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.write:
        from ingest import write_squid, write_zeek

        writer = {"squid": write_squid, "zeek": write_zeek}[args.format]
        writer(args.log, args.lines, random.Random(42))
        print(f"wrote {args.lines:,} {args.format} lines to {args.log}")
        return
    catalog = load_catalog(args.catalog) if args.catalog else load_catalog()
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            with fresh_store(args.database_url, Path(tmp), f"run{run}") as (_url, engine):
                start = time.process_time()
                stats = ingest_files(engine, catalog, [args.log], args.format)
                best = min(best, time.process_time() - start)
    tree = Path(enforcer.__file__).resolve().parents[1]
    print(
        f"{tree} {args.format}: ingest_files CPU {best:.3f} s (best of {args.repeat}), "
        f"{stats.records:,} records, {stats.attributed:,} to catalog apps"
    )


if __name__ == "__main__":
    main()
