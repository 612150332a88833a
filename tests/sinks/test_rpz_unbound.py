"""The rpz sink against a real Unbound (Debian package) loading the zone with its `rpz:` clause.

Unbound forwards every query to a fake upstream on 127.0.0.1 that has an A record for each test
name (Unbound answers local data before it looks at a response policy zone, so local data cannot
stand in for it): no query leaves the machine, and an NXDOMAIN can only come from the zone.
``local-zone: "test." nodefault`` lifts Unbound's built-in RFC 6761 refusal of ``test.``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.models import Action, Indicator
from enforcer.sinks import rpz

from .helpers import FakeUpstream, free_port, ind, resolve, settings, wait_answering

pytestmark = pytest.mark.skipif(
    not (shutil.which("unbound") or Path("/usr/sbin/unbound").exists()),
    reason="Unbound is not installed (apt-get install unbound)",
)
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
NAMES = {
    "blocked.test": "192.0.2.1",
    "www.blocked.test": "192.0.2.2",
    "ok.blocked.test": "192.0.2.3",
    "www.ok.blocked.test": "192.0.2.4",
    "allowed.test": "192.0.2.5",
    "later.test": "192.0.2.6",
    "www.later.test": "192.0.2.7",
}


class Unbound:
    """Unbound on a free 127.0.0.1 port with a control interface on another one."""

    def __init__(self, workdir: Path, zone: Path, upstream: FakeUpstream) -> None:
        self.port, self.control_port = free_port(), free_port()
        self.conf = workdir / "unbound.conf"
        self.conf.write_text(
            f"""server:
  module-config: "respip validator iterator"
  interface: 127.0.0.1@{self.port}
  port: {self.port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{workdir}"
  pidfile: "{workdir}/unbound.pid"
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-not-query-localhost: no
  local-zone: "test." nodefault
remote-control:
  control-enable: yes
  control-interface: 127.0.0.1
  control-port: {self.control_port}
  control-use-cert: no
rpz:
  name: rpz.local.
  zonefile: {zone}
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{upstream.port}
"""
        )
        subprocess.run([UNBOUND + "-checkconf", str(self.conf)], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [UNBOUND, "-d", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_answering(self.port, "allowed.test")
        except TimeoutError:
            self.stop()
            raise

    @property
    def reload_command(self) -> str:
        return f"{CONTROL} -c {self.conf} auth_zone_reload rpz.local."

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream(NAMES)
    yield server
    server.stop()


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    return tmp_path / "zones" / "rpz.zone"


def export(zone: Path, indicators: list[Indicator], revision: int, **fields: object) -> None:
    cfg = settings(rpz_path=zone, **fields)
    result = rpz.apply(rpz.plan(indicators, revision, cfg), cfg)
    assert result.written and not result.error, result


@pytest.fixture
def unbound(tmp_path: Path, zone: Path, upstream: FakeUpstream) -> Iterator[Unbound]:
    export(zone, [ind("blocked.test"), ind("ok.blocked.test", Action.ALLOWED)], 1)
    server = Unbound(tmp_path, zone, upstream)
    yield server
    server.stop()


def test_blocked_names_get_nxdomain_and_others_resolve(unbound: Unbound) -> None:
    assert resolve(unbound.port, "blocked.test") == ("NXDOMAIN", [])
    assert resolve(unbound.port, "www.blocked.test") == ("NXDOMAIN", [])
    assert resolve(unbound.port, "allowed.test") == ("NOERROR", ["192.0.2.5"])
    # An allowed subdomain under a blocked parent passes through, with its own subdomains.
    assert resolve(unbound.port, "ok.blocked.test") == ("NOERROR", ["192.0.2.3"])
    assert resolve(unbound.port, "www.ok.blocked.test") == ("NOERROR", ["192.0.2.4"])


def test_a_reexported_zone_is_picked_up_on_reload(unbound: Unbound, zone: Path) -> None:
    assert resolve(unbound.port, "later.test") == ("NOERROR", ["192.0.2.6"])
    export(zone, [ind("later.test")], 2, rpz_reload_command=unbound.reload_command)
    assert "@ SOA localhost. hostmaster.localhost. 2 " in zone.read_text()
    assert resolve(unbound.port, "later.test") == ("NXDOMAIN", [])
    assert resolve(unbound.port, "www.later.test") == ("NXDOMAIN", [])
    assert resolve(unbound.port, "blocked.test") == ("NOERROR", ["192.0.2.1"])


def test_a_block_page_address_is_served_as_local_data(
    tmp_path: Path, zone: Path, upstream: FakeUpstream
) -> None:
    export(zone, [ind("blocked.test")], 3, rpz_redirect_ip="192.0.2.99")
    server = Unbound(tmp_path, zone, upstream)
    try:
        assert resolve(server.port, "blocked.test") == ("NOERROR", ["192.0.2.99"])
        assert resolve(server.port, "www.blocked.test") == ("NOERROR", ["192.0.2.99"])
        assert resolve(server.port, "allowed.test") == ("NOERROR", ["192.0.2.5"])
    finally:
        server.stop()
