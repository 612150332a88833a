"""atheris harness: saved plan files (JSON) on arbitrary bytes (not part of CI).

    .venv/bin/python tests/hardening/fuzz_plan.py -max_total_time=600

What `enforcer apply PLANFILE` does with a file: json.loads, then plan_from_dict. Only
ValueError (json's errors are ValueErrors too) may come out. Random bytes are rarely JSON, so
the run starts from a corpus holding a real saved plan (written to a temporary directory when
no corpus directory is given) and libFuzzer mutates that.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from enforcer.plan.planfile import plan_from_dict

from tests.hardening.test_fuzz_plan import SEED  # after: it imports enforcer.plan too


def one_input(data: bytes) -> None:
    # RecursionError: json's own limit on nesting depth, which the CLI would show as an error.
    with contextlib.suppress(ValueError, RecursionError):
        plan_from_dict(json.loads(data))


if __name__ == "__main__":
    args = sys.argv
    if not any(Path(a).is_dir() for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="plan-corpus-"))
        (corpus / "seed.json").write_text(json.dumps(SEED, indent=1))
        args = [*args, str(corpus)]
    atheris.Setup(args, one_input)
    atheris.Fuzz()
