"""atheris harness: the policy loader on arbitrary bytes (coverage-guided, not part of CI).

    .venv/bin/python tests/hardening/fuzz_policy.py -max_total_time=600 -rss_limit_mb=2048

Only PolicySetError may come out; anything else is a crash that libFuzzer saves as
``crash-<sha1>``: turn it into an ``@example`` of tests/hardening/test_fuzz_policy.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from enforcer.catalog import load_catalog
    from enforcer.decide.expand import expand
    from enforcer.errors import PolicySetError
    from enforcer.pipeline.run import load_state

NOW = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
CATALOG = load_catalog()
DIRECTORY = Path(tempfile.mkdtemp()) / "policies"
DIRECTORY.mkdir()


def one_input(data: bytes) -> None:
    (DIRECTORY / "fuzz.yaml").write_bytes(data)
    with contextlib.suppress(PolicySetError):
        expand(load_state(DIRECTORY, now=NOW, catalog=CATALOG))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
