"""`enforcer serve` and `enforcer daemon --serve` as real processes: start, answer, stop cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ADMIN, SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env.update(
        {
            "ENFORCER_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "ENFORCER_ADMIN_TOKEN": ADMIN,
            "ENFORCER_ENROLL_SECRET": SECRET,
            "ENFORCER_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def run_until_healthy(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "enforcer", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90  # a CI machine shared with other jobs starts it slowly
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    return proc.returncode, err


@pytest.mark.slow
def test_serve_runs_migrates_and_stops(tmp_path: Path) -> None:
    port = free_port()
    proc = run_until_healthy(["serve", "--port", str(port)], env_for(tmp_path), port)
    try:
        enrolled = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/enroll",
            json={"enrollSecret": SECRET, "deviceId": "d1", "groups": []},
        )
        assert enrolled.status_code == 201
        token = enrolled.json()["deviceToken"]
    finally:
        code, err = stop(proc)
    # uvicorn shuts down gracefully, then re-raises the signal so that the exit status says why.
    assert code in (0, -signal.SIGTERM), err
    assert '"event": "server_starting"' in err or '"event":"server_starting"' in err
    assert ADMIN not in err and SECRET not in err and token not in err


@pytest.mark.slow
def test_daemon_serve_runs_both_in_one_process(tmp_path: Path) -> None:
    port = free_port()
    policies = tmp_path / "policies"
    policies.mkdir()
    args = ["daemon", "--serve", "--port", str(port), "--policies", str(policies)]
    proc = run_until_healthy(args, env_for(tmp_path, ENFORCER_WATCH_POLICIES="false"), port)
    code, err = stop(proc)
    assert code in (0, -signal.SIGTERM), err
    assert "daemon_started" in err and "server_starting" in err


@pytest.mark.parametrize(
    ("admin", "secret", "message"),
    [
        ("", SECRET, "ENFORCER_ADMIN_TOKEN is not set"),
        (ADMIN, "short", "ENFORCER_ENROLL_SECRET is too short"),
    ],
)
def test_serve_refuses_to_start_without_safe_secrets(
    tmp_path: Path, admin: str, secret: str, message: str
) -> None:
    env = env_for(tmp_path, ENFORCER_ADMIN_TOKEN=admin, ENFORCER_ENROLL_SECRET=secret)
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "serve.db").exists()  # refused before touching the store


def test_serve_without_a_policy_directory_starts_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    env = env_for(tmp_path, ENFORCER_POLICY_DIR=str(tmp_path / "no-such-policies"))
    proc = run_until_healthy(["serve", "--port", str(port)], env, port)
    try:
        time.sleep(1.0)  # the console's warm-up thread runs at start-up
        assert httpx.get(f"http://127.0.0.1:{port}/console/login").status_code == 200
    finally:
        _code, err = stop(proc)
    assert "Traceback" not in err, err[-3000:]


def test_stopping_answers_waiting_long_polls_instead_of_failing_them(tmp_path: Path) -> None:
    import threading

    port = free_port()
    proc = run_until_healthy(["serve", "--port", str(port)], env_for(tmp_path), port)
    answers: list[int] = []
    try:
        base = f"http://127.0.0.1:{port}"
        enrolled = httpx.post(
            f"{base}/api/v1/enroll",
            json={"enrollSecret": SECRET, "deviceId": "d1", "groups": []},
        ).json()
        auth = {"Authorization": f"Bearer {enrolled['deviceToken']}"}
        first = httpx.get(f"{base}/api/v1/sync", headers=auth).json()

        def long_poll() -> None:
            params = {"since": first["revision"], "epoch": first.get("epoch") or "", "wait": 30}
            if not params["epoch"]:
                del params["epoch"]
            answers.append(
                httpx.get(
                    f"{base}/api/v1/sync", params=params, headers=auth, timeout=40
                ).status_code
            )

        waiting = threading.Thread(target=long_poll)
        waiting.start()
        time.sleep(1.0)  # the request is waiting for a change
        started = time.monotonic()
    finally:
        _code, err = stop(proc)
    waiting.join(10)
    assert answers == [304], err[-2000:]
    # At once: after the graceful timeout it would have been a 500 (checked above and below).
    assert time.monotonic() - started < 15
    assert "Traceback" not in err and "timeout graceful shutdown exceeded" not in err


def test_slow_clients_are_cut_off_and_do_not_starve_healthz(tmp_path: Path) -> None:
    """Hundreds of clients that never finish their request head: /healthz still answers at
    once, and each slow connection is closed after ENFORCER_HEADER_TIMEOUT."""
    port = free_port()
    env = env_for(tmp_path, ENFORCER_HEADER_TIMEOUT="1.5")
    proc = run_until_healthy(["serve", "--port", str(port)], env, port)
    slow: list[socket.socket] = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            slow.append(sock)
        # The first answer waits for the server to take in the burst of connections (seconds
        # on a busy CI machine); then it answers while holding them all.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        started = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        time.sleep(3.0)  # past the head timeout
        closed = 0
        for sock in slow:
            sock.settimeout(0.5)
            with contextlib.suppress(TimeoutError, OSError):
                closed += sock.recv(1) == b""
        assert closed == len(slow), f"{closed} of {len(slow)} slow connections closed"
    finally:
        for sock in slow:
            sock.close()
        _code, err = stop(proc)
    assert "Traceback" not in err
