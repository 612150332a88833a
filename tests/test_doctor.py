"""`enforcer doctor` names what is wrong and how to fix it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_policy


def doctor(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "enforcer", "doctor", *args], env={**os.environ, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_healthy_installation(tmp_path: Path, db_url: str) -> None:
    write_policy(tmp_path / "policies", "a.yaml", "apps:\n  - {app: pastebin, tag: unsanctioned}\n")
    env = {
        "ENFORCER_DATABASE_URL": db_url,
        "ENFORCER_ADMIN_TOKEN": "doctor-admin-token-0123456789abcdef",
        "ENFORCER_ENROLL_SECRET": "doctor-enrol-secret-0123456789abcdef",
    }
    done = doctor([], env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "ok    store" in done.stdout and "reachable and migrated" in done.stdout
    assert "policy set policies is valid: 1 desired indicators" in done.stdout
    assert "clock" in done.stdout


def test_problems_are_named_with_the_fix(tmp_path: Path) -> None:
    write_policy(
        tmp_path / "policies",
        "a.yaml",
        "apps:\n  - {app: pastebin, tag: unsanctioned, colour: red}\n",
    )
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        env = {"ENFORCER_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
        done = doctor(["--proxy-listen", f"127.0.0.1:{port}"], env, tmp_path)
    finally:
        busy.close()
    assert done.returncode == 1
    assert "FAIL  store postgresql+psycopg://nobody@127.0.0.1:1/none is unreachable" in done.stdout
    assert (
        "FAIL  policy set policies has 1 error(s): policies/a.yaml:2: apps[0].colour: unknown field"
        in done.stdout
    )
    assert f"FAIL  127.0.0.1:{port} (TCP) cannot be bound" in done.stdout
    assert "warn  ENFORCER_ADMIN_TOKEN and ENFORCER_ENROLL_SECRET unset" in done.stdout
