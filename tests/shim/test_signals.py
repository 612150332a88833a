"""The shim as a process and the signals a host sends it: SIGHUP (a closed terminal,
`systemctl reload`, log rotation) must not stop enforcement; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from enforcer.models import Action, Indicator
from enforcer.shim.indicator_cache import IndicatorCache
from tests.sinks.helpers import free_port


def _wait(check: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not check():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {what}; the shim's log:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_sighup_neither_stops_nor_pauses_the_shim(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cache = IndicatorCache(state / "indicators.sqlite")
    cache.apply(1, [Indicator("blocked.example", Action.BLOCK)], (), snapshot=True)
    cache.close()
    dns_port, proxy_port = free_port(), free_port()
    log = tmp_path / "shim.log"
    argv = [
        sys.executable, "-m", "enforcer", "shim", "--server", "http://127.0.0.1:9",
        "--enroll-secret-file", str(_secret(tmp_path)), "--state-dir", str(state),
        "--dns-listen", f"127.0.0.1:{dns_port}", "--proxy-listen", f"127.0.0.1:{proxy_port}",
    ]  # fmt: skip
    with log.open("ab") as out:
        shim = subprocess.Popen(
            argv, stdout=out, stderr=out, env={**os.environ, "ENFORCER_LOG_FORMAT": "json"}
        )
    try:
        _wait(lambda: "dns.listening" in log.read_text(), "DNS listener", shim, log)
        shim.send_signal(signal.SIGHUP)  # while it is still starting: ignored, not the end
        _wait(lambda: "shim.sighup" in log.read_text(), "SIGHUP log event", shim, log)

        def blocked() -> bool:
            query = dns.message.make_query("blocked.example", "A")
            answer = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5)
            return answer.rcode() == dns.rcode.NXDOMAIN

        assert blocked()
        _wait(lambda: "shim.running" in log.read_text(), "start-up to finish", shim, log)
        shim.send_signal(signal.SIGHUP)
        _wait(lambda: "events spooled" in log.read_text(), "SIGHUP spooling", shim, log)
        time.sleep(0.3)
        assert shim.poll() is None, log.read_text()[-2000:]
        assert blocked(), "still enforcing after SIGHUP"
        shim.send_signal(signal.SIGTERM)
        assert shim.wait(30) == 0
    finally:
        if shim.poll() is None:
            shim.kill()
            shim.wait()


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "enroll-secret"
    path.write_text("s" * 32 + "\n")
    return path
