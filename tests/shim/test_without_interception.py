"""Without interception: the PAC file on the proxy's port, and the systemd-resolved drop-in.

The PAC script is fetched from a running proxy and, where Node.js is installed, run with the
PAC helper functions a browser provides, to check what it answers for real URLs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from enforcer.cli import app
from tests.shim.test_proxy import Proxy, ca, origins, start  # noqa: F401 - fixtures used by name

pytestmark = pytest.mark.timeout(60)

NODE = shutil.which("node")
PAC_RUNNER = """
const pac = require("fs").readFileSync(0, "utf8");
const isPlainHostName = (h) => !h.includes(".");
const shExpMatch = (s, p) => new RegExp("^" + p.replace(/\\./g, "\\\\.").replace(/\\*/g, ".*")
  .replace(/\\?/g, ".") + "$").test(s);
eval(pac);
const answers = {};
for (const url of process.argv.slice(1)) answers[url] = FindProxyForURL(url, new URL(url).hostname);
console.log(JSON.stringify(answers));
"""


@pytest.fixture
def proxy(tmp_path: Path, origins: tuple[int, int]) -> Iterator[Proxy]:  # noqa: F811
    yield from start(tmp_path, origins)


def test_the_proxy_serves_a_pac_file_naming_itself(proxy: Proxy) -> None:
    answer = httpx.get(f"{proxy.url}/proxy.pac", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ns-proxy-autoconfig"
    assert f'return "PROXY 127.0.0.1:{proxy.port}; DIRECT";' in answer.text
    strict = httpx.get(f"{proxy.url}/proxy.pac?fallback=none", timeout=5)
    assert f'return "PROXY 127.0.0.1:{proxy.port}";' in strict.text
    # Only for requests addressed to the proxy itself (a page elsewhere cannot read it).
    foreign = httpx.get(f"{proxy.url}/proxy.pac", headers={"Host": "evil.test"}, timeout=5)
    assert foreign.status_code == 400
    assert httpx.post(f"{proxy.url}/proxy.pac", timeout=5).status_code == 405


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_pac_file_sends_the_web_to_the_proxy_and_loopback_direct(proxy: Proxy) -> None:
    assert NODE is not None
    script = httpx.get(f"{proxy.url}/proxy.pac", timeout=5).text
    urls = [
        "https://mega.nz/",
        "http://example.com/x",
        "http://localhost:8080/",
        "http://intranet/",
    ]
    run = subprocess.run(
        [NODE, "-e", PAC_RUNNER, *urls],
        input=script,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout)
    via_proxy = f"PROXY 127.0.0.1:{proxy.port}; DIRECT"
    assert answers == {
        "https://mega.nz/": via_proxy,
        "http://example.com/x": via_proxy,
        "http://localhost:8080/": "DIRECT",
        "http://intranet/": "DIRECT",
    }


def configure(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["shim", "configure", *args], env={"COLUMNS": "300"})
    return result.exit_code, result.output


def test_configure_writes_the_resolved_drop_in(tmp_path: Path) -> None:
    path = tmp_path / "resolved.conf.d" / "enforcer.conf"
    code, output = configure("--systemd-resolved", "--output", str(path))
    assert code == 0, output
    lines = path.read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == [
        "[Resolve]",
        "DNS=127.0.0.1:53",
        "Domains=~.",
    ]
    assert "systemctl restart systemd-resolved" in output
    # Its own file is rewritten without --force.
    code, _ = configure("--systemd-resolved", "--dns", "[::1]:5353", "--output", str(path))
    assert code == 0
    assert "DNS=[::1]:5353\n" in path.read_text()


def test_configure_refuses_to_overwrite_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "enforcer.conf"
    path.write_text("[Resolve]\nDNS=192.0.2.1\n")
    code, output = configure("--systemd-resolved", "--dns", "127.0.0.1:5300", "--output", str(path))
    assert code == 1 and "--force" in output
    assert path.read_text() == "[Resolve]\nDNS=192.0.2.1\n"
    code, _ = configure(
        "--systemd-resolved", "--dns", "127.0.0.1:5300", "--output", str(path), "--force"
    )
    assert code == 0
    assert "DNS=127.0.0.1:5300\n" in path.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dns", "dns.example:53"], "IP address"),
        (["--dns", "127.0.0.1:99999"], "HOST:PORT"),
        ([], "--systemd-resolved"),
    ],
)
def test_configure_errors_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "enforcer.conf"
    flags = [] if not args else ["--systemd-resolved"]
    code, output = configure(*flags, *args, "--output", str(path))
    assert code == 2 and message in output, output
    assert not path.exists()
