"""How long a command takes to start: `enforcer --version`, `--help`, Tab completion, `explain`.

Each command is a fresh process, timed from start to exit, against the peer: the same
interpreter running ``python -c pass``, measured in the same run. The commands run in turns
(peer, --version, --help, completion, explain; then again), so a machine that slows down for a
while slows them all alike; the figure is the median of `--runs` runs, after one untimed round
that compiles the modules (an installed package has them compiled). `explain` runs against a
SQLite store in a temporary directory holding the repository's example policies, applied once
beforehand.

    python benchmarks/cli.py              # 15 runs of each
    python benchmarks/cli.py --runs 31

Targets: `--version` and `--help` within 8x the bare interpreter, `explain` within 25x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def enforcer_command() -> list[str]:
    """The installed `enforcer` script next to this interpreter (what a user runs), else -m."""
    script = Path(sys.executable).parent / "enforcer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "enforcer"]


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from start to exit of one process; a failing command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Runs of each command (median).")
    args = parser.parse_args()

    enforcer = enforcer_command()
    with tempfile.TemporaryDirectory(prefix="enforcer-cli-bench-") as tmp:
        work = Path(tmp)
        shutil.copytree(REPO / "policies", work / "policies")
        env = {
            **os.environ,
            "ENFORCER_DATABASE_URL": f"sqlite:///{work / 'enforcer.db'}",
            "ENFORCER_POLICY_DIR": str(work / "policies"),
        }
        env.pop("ENFORCER_SETTINGS_FILE", None)
        # Measure an installed program, which has its modules compiled: bytecode goes to a
        # cache of this run (written by the untimed first round), whatever the caller's setting.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        timed([*enforcer, "apply", "--yes"], env, work)
        complete = {**env, "_ENFORCER_COMPLETE": "complete_bash", "COMP_WORDS": "enforcer ind",
                    "COMP_CWORD": "1"}  # fmt: skip
        commands: list[tuple[str, list[str], dict[str, str], float | None]] = [
            ("python -c pass", [sys.executable, "-c", "pass"], env, None),
            ("enforcer --version", [*enforcer, "--version"], env, 8.0),
            ("enforcer --help", [*enforcer, "--help"], env, 8.0),
            ("Tab completion (enforcer ind<Tab>)", enforcer, complete, None),
            ("enforcer explain www.mega.nz", [*enforcer, "explain", "www.mega.nz"], env, 25.0),
        ]
        samples: dict[str, list[float]] = {name: [] for name, *_ in commands}
        for round_ in range(args.runs + 1):
            for name, command, command_env, _target in commands:
                elapsed = timed(command, command_env, work)
                if round_:
                    samples[name].append(elapsed)

    peer = statistics.median(samples[commands[0][0]])
    print(f"{args.runs} runs each, median; peer: {sys.executable} -c pass")
    print(f"{'command':<38} {'median':>9} {'ratio':>7}  target")
    for name, _command, _env, target in commands:
        median = statistics.median(samples[name])
        ratio = median / peer
        verdict = (
            "" if target is None else f"<= {target:g}x: {'met' if ratio <= target else 'NOT met'}"
        )
        print(f"{name:<38} {median * 1000:>7.0f}ms {ratio:>6.1f}x  {verdict}")


if __name__ == "__main__":
    main()
