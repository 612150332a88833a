"""The dnsmasq sink against a real dnsmasq reading the file with ``--conf-file``.

dnsmasq forwards what it does not answer itself to a fake upstream on 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.models import Action
from enforcer.sinks import dnsmasq

from .helpers import FakeUpstream, free_port, ind, resolve, settings, wait_answering

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
pytestmark = pytest.mark.skipif(
    not Path(DNSMASQ).exists(), reason="dnsmasq is not installed (apt-get install dnsmasq-base)"
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream({"ok.blocked.test": "192.0.2.3", "other.test": "192.0.2.4"})
    yield server
    server.stop()


def start(conf: Path, upstream: FakeUpstream) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            DNSMASQ, "--no-daemon", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", f"--conf-file={conf}",
            "--address=/allowed.test/192.0.2.10", f"--server=127.0.0.1#{upstream.port}",
            "--pid-file=", "--user=", "--log-facility=-", "--cache-size=0",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_answering(port, "allowed.test")
    except TimeoutError:
        proc.kill()
        raise AssertionError(proc.communicate()[1].decode()) from None
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_dnsmasq_blocks_a_name_and_its_subdomains(tmp_path: Path, upstream: FakeUpstream) -> None:
    conf = tmp_path / "enforcer.conf"
    cfg = settings(dnsmasq_path=conf)
    desired = [
        ind("blocked.test"),
        ind("ok.blocked.test", Action.ALLOWED),
        ind("warn.test", Action.WARN),
    ]
    result = dnsmasq.apply(dnsmasq.plan(desired, 4, cfg), cfg)
    assert result.written and result.created == 2
    text = conf.read_text()
    assert "address=/blocked.test/0.0.0.0\n" in text and "server=/ok.blocked.test/#\n" in text
    assert "warn.test" not in text  # Warn is skipped by default: a resolver cannot warn

    proc, port = start(conf, upstream)
    try:
        assert resolve(port, "blocked.test") == ("NOERROR", ["0.0.0.0"])
        assert resolve(port, "www.blocked.test") == ("NOERROR", ["0.0.0.0"])
        assert resolve(port, "allowed.test") == ("NOERROR", ["192.0.2.10"])
        assert resolve(port, "other.test") == ("NOERROR", ["192.0.2.4"])
        # The exception under the blocked parent goes to the usual upstream.
        assert resolve(port, "ok.blocked.test") == ("NOERROR", ["192.0.2.3"])
    finally:
        stop(proc)


def test_warn_blocks_when_configured(tmp_path: Path) -> None:
    conf = tmp_path / "enforcer.conf"
    cfg = settings(dnsmasq_path=conf, sink_warn_action="block")
    dnsmasq.apply(dnsmasq.plan([ind("warn.test", Action.WARN)], 1, cfg), cfg)
    assert "address=/warn.test/0.0.0.0\n" in conf.read_text()
