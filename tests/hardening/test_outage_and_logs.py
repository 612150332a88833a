"""The whole system as processes, through a server outage; then every log is scanned for secrets.

`enforcer daemon --serve` (daemon and API in one process) and `enforcer shim` run as real
processes on free ports of 127.0.0.1, with a fake upstream resolver. The server is killed
(kill -9) while the shim keeps answering: blocked names stay blocked, other names resolve, and
every answer becomes an event in the shim's spool. The server comes back on the same port and
store: every event of the outage is stored exactly once (issue 7, "faults").

Then the security check: the admin token, the enrolment secret and the device token the shim
received must not appear in any log line of any process, including after failed logins, a
wrong enrolment secret and the outage's errors (issue 7, "no secret in logs").
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from enforcer.store.db import make_engine
from enforcer.store.migrate import upgrade
from enforcer.store.tables.devices import NetworkEventRow
from tests.shim.conftest import FakeUpstream, upstream  # noqa: F401  (fixture)
from tests.shim.test_agent import Shim
from tests.shim.test_sync import ADMIN_TOKEN, ENROLL_SECRET, free_port

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_NAMES = 60


class Server:
    """`enforcer daemon --serve` as a process: killed and started again on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{tmp / 'store.db'}"
        upgrade(make_engine(self.database_url))
        self.policies = tmp / "policies"
        self.policies.mkdir()
        (self.policies / "a.yaml").write_text("apps:\n  - {app: pastebin, tag: unsanctioned}\n")
        self.logs: list[Path] = []
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.tmp / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**os.environ, "ENFORCER_DATABASE_URL": self.database_url,
               "ENFORCER_POLICY_DIR": str(self.policies), "ENFORCER_ADMIN_TOKEN": ADMIN_TOKEN,
               "ENFORCER_ENROLL_SECRET": ENROLL_SECRET, "ENFORCER_LOG_FORMAT": "json"}  # fmt: skip
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "enforcer", "daemon", "--serve", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 90  # a loaded CI machine
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    live = Server(tmp_path)
    try:  # a start that times out still stops the process it started
        live.start()
        yield live
    finally:
        live.stop()


def stored_domains(engine: Engine) -> collections.Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(NetworkEventRow.__table__.c.domain))  # type: ignore[attr-defined]
        return collections.Counter(domain for (domain,) in rows)


@pytest.mark.timeout(150)
def test_an_outage_loses_no_event_and_no_log_holds_a_secret(
    server: Server,
    upstream: FakeUpstream,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    shim = Shim(server.url, state, upstream.port, log_file=tmp_path / "shim.log")
    engine = make_engine(server.database_url)
    try:
        shim.wait_for(lambda: shim.dig("pastebin.com")[0] == "NXDOMAIN")
        device_token = (state / "device-token").read_text().strip()
        # Failed logins and a wrong enrolment secret: their errors are logged, never the values.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert (
                client.get(
                    "/api/v1/devices", headers={"Authorization": f"Bearer {device_token}"}
                ).status_code
                == 403
            )
            assert (
                client.get(
                    "/api/v1/sync", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                ).status_code
                == 403
            )
            assert (
                client.get(
                    "/api/v1/devices", headers={"Authorization": f"Bearer {ENROLL_SECRET}"}
                ).status_code
                == 401
            )
            wrong = {"enrollSecret": ADMIN_TOKEN, "deviceId": "intruder"}
            assert client.post("/api/v1/enroll", json=wrong).status_code == 401
            assert (
                client.get(
                    "/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                ).status_code
                == 200
            )

        server.kill()  # kill -9: the API and the daemon are gone
        names = [f"outage-{i}.example.test" for i in range(OUTAGE_NAMES)]
        for name in names:
            assert shim.dig(name) == ("NOERROR", "192.0.2.1")  # still resolving
        assert shim.dig("pastebin.com")[0] == "NXDOMAIN"  # still enforcing
        assert shim.curl("http://pastebin.com/") == "403"  # the proxy too
        time.sleep(2)  # the reporter fails to send, backs off, keeps spooling
        assert not stored_domains(engine).keys() & set(names)

        server.start()  # same port, same store
        deadline = time.monotonic() + 60
        while not set(names) <= (seen := stored_domains(engine)).keys():
            assert time.monotonic() < deadline, f"missing: {set(names) - seen.keys()}"
            time.sleep(0.2)
        time.sleep(1.5)  # a duplicate would arrive with the next flushes: give it the chance
        seen = stored_domains(engine)
        assert {name: seen[name] for name in names} == dict.fromkeys(names, 1)
        assert shim.proc.poll() is None
    finally:
        shim.stop()
        server.stop()
        engine.dispose()

    logs = {path.name: path.read_bytes() for path in [*server.logs, tmp_path / "shim.log"]}
    assert all(logs.values()), "every process logged something"
    for secret in (ADMIN_TOKEN, ENROLL_SECRET, device_token):
        for name, content in logs.items():
            assert secret.encode() not in content, f"{name} holds a secret"
