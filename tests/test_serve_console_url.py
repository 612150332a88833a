"""`enforcer serve` says at start where the console is and which policy directory it edits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from enforcer.cli.serve import console_url
from enforcer.config import Settings
from tests.sinks.helpers import free_port

ADMIN = "console-url-admin-token-0123456789"
SECRET = "console-url-enrol-secret-0123456789"


def test_the_first_log_line_names_the_console_url_and_the_policy_dir(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ENFORCER_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "ENFORCER_POLICY_DIR": str(tmp_path / "mine"),
        "ENFORCER_ADMIN_TOKEN": ADMIN,
        "ENFORCER_ENROLL_SECRET": SECRET,
        "ENFORCER_SERVER_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        started = None
        while started is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if '"server_starting"' in line:
                started = json.loads(line)
        assert started is not None, "no server_starting event"
        assert started["console_url"] == f"http://127.0.0.1:{port}/console/"
        assert started["policy_dir"] == str((tmp_path / "mine").resolve())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_wildcard_address_is_opened_on_the_loopback() -> None:
    base = Settings(admin_token="x" * 32, enroll_secret="y" * 32)
    assert console_url(base.model_copy(update={"server_host": "0.0.0.0", "server_port": 8440})) == (
        "http://127.0.0.1:8440/console/"
    )
    assert console_url(base.model_copy(update={"server_host": "::1", "server_port": 9})) == (
        "http://[::1]:9/console/"
    )
    assert console_url(base.model_copy(update={"server_host": "enforcer.example"})) == (
        "http://enforcer.example:8440/console/"
    )
