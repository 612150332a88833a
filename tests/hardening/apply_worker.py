"""A child process for the kill -9 fault test: plan and apply a large synthetic policy set.

    python -m tests.hardening.apply_worker DATABASE_URL DOMAINS POLICY_DIR

It prints ``applying <revision>`` (flushed) just before the one `apply` call and ``applied
<revision>`` after it, so the parent knows the kill landed inside the apply. The catalog is
benchmarks/reconcile.py's synthetic one (DOMAINS domains of "paste" apps, all unsanctioned by
one rule), so the set is as large as a real big deployment without a 200,000-line YAML file.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from enforcer.pipeline.run import apply, load_desired, make_plan
from enforcer.store.db import make_engine
from enforcer.store.feed import current_revision

# benchmarks/ is a directory of scripts (they import their helpers as top-level modules).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reconcile import synthetic_catalog, write_policies


def main(url: str, domains: int, policy_dir: Path) -> None:
    """Plan DOMAINS indicators against the store at `url` and apply them in one transaction."""
    engine = make_engine(url)
    write_policies(policy_dir, warn_apps=0)
    desired = load_desired(
        policy_dir, now=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), catalog=synthetic_catalog(domains)
    )
    plan = make_plan(engine, desired, impact_preview=False)
    with engine.connect() as conn:
        print("applying", current_revision(conn), len(plan.changes), flush=True)
    revision = apply(engine, plan, actor="apply_worker")
    print("applied", revision, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
