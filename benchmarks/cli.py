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

Targets: `--version` and `--help` within 8x the bare interpreter, `explain` within 25x, in wall
time. The CPU time each process used (user + system) is printed beside it: on a shared machine
the wall time also counts the waits for a core, which weigh more on the longer commands.
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


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Seconds from start to exit of one process, and the CPU seconds it used (user + system);
    a failing command stops the benchmark."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    errors = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{errors[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


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
        wall: dict[str, list[float]] = {name: [] for name, *_ in commands}
        cpu: dict[str, list[float]] = {name: [] for name, *_ in commands}
        for round_ in range(args.runs + 1):
            for name, command, command_env, _target in commands:
                elapsed, used = timed(command, command_env, work)
                if round_:
                    wall[name].append(elapsed)
                    cpu[name].append(used)

    peer = commands[0][0]
    peer_wall, peer_cpu = statistics.median(wall[peer]), statistics.median(cpu[peer])
    print(f"{args.runs} runs each, medians; peer: {sys.executable} -c pass")
    print(f"{'command':<36} {'wall':>7} {'ratio':>6} {'cpu':>7} {'ratio':>6}  target (wall)")
    for name, _command, _env, target in commands:
        ratio = statistics.median(wall[name]) / peer_wall
        verdict = (
            "" if target is None else f"<= {target:g}x: {'met' if ratio <= target else 'NOT met'}"
        )
        print(
            f"{name:<36} {statistics.median(wall[name]) * 1000:>5.0f}ms {ratio:>5.1f}x "
            f"{statistics.median(cpu[name]) * 1000:>5.0f}ms "
            f"{statistics.median(cpu[name]) / peer_cpu:>5.1f}x  {verdict}"
        )


if __name__ == "__main__":
    main()
