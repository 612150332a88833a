"""The README's walkthrough, run verbatim as a new admin runs it, in one shell at a terminal.

Every ```sh block marked ``<!-- walkthrough -->`` in README.md is run, in order, by one bash
(``-e``: a failing command fails the test) on a pseudo-terminal, from a fresh clone of this
repository, with a home directory of its own; a prompt ("[y/N]") is answered yes, as the admin
would. Then the block marked ``<!-- walkthrough: server -->`` starts the server in the same
shell, and the console must show the month of sample data; Ctrl-C stops it. Afterwards the clone
must be as clean as it was (`git status`). Blocks marked ``<!-- figures -->`` hold output the
README quotes: every line must be what the walkthrough printed, so the figures cannot drift.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.sinks.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
WALKTHROUGH = re.compile(r"<!-- walkthrough -->\n```sh\n(.*?)```", re.S)
SERVER = re.compile(r"<!-- walkthrough: server -->\n```sh\n(.*?)```", re.S)
FIGURES = re.compile(r"<!-- figures -->\n```\n(.*?)```", re.S)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

pytestmark = pytest.mark.slow


@dataclass
class Walk:
    """What the walkthrough printed and what it left behind."""

    output: str
    exit_code: int
    console: dict[str, str]
    status_before: str
    status_after: str


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


class Terminal:
    """bash on a pseudo-terminal: what it prints, and keys typed into it."""

    def __init__(self, script: Path, cwd: Path, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the admin's shell
            os.chdir(cwd)
            os.execve("/bin/bash", ["bash", "--noprofile", "--norc", "-e", str(script)], env)
        self.text = ""

    def read_until(self, done: re.Pattern[str], timeout: float) -> bool:
        """Read (answering prompts with y) until `done` matches or the shell ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the shell ended and closed the terminal
                return False
            if not chunk:
                return False
            self.text += ANSI.sub("", chunk.decode(errors="replace")).replace("\r", "")
            if self.text.rstrip().endswith("[y/N]:"):
                os.write(self.fd, b"y\n")
            if done.search(self.text):
                return True
        raise AssertionError(
            f"the walkthrough did not get on within {timeout} s:\n{self.text[-3000:]}"
        )

    def finish(self) -> int:
        self.read_until(re.compile(r"(?!)"), 120)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def _console(url: str, token: str) -> dict[str, str]:
    """Sign in and read the dashboard's totals of the last 30 days, as the admin sees them.
    (The session cookie is Secure, which browsers honour on 127.0.0.1 and httpx only over
    https: it is passed by hand.)"""
    with httpx.Client(base_url=url, timeout=60) as client:
        form = client.get("login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        signed = client.post(
            "login",
            data={"csrf": csrf.group(1), "token": token, "next": "/console/"},
            headers={"cookie": f"enforcer_console={form.cookies['enforcer_console']}"},
        )
        assert signed.status_code == 303, signed.text
        cookie = {"cookie": f"enforcer_console={signed.cookies['enforcer_console']}"}
        page = client.get("", params={"days": "30"}, headers=cookie)
        assert page.status_code == 200
    kpis = re.findall(r'<span class="kpi">([^<]+)</span>\s*([a-z ]+)', page.text)
    return {label.strip(): value for value, label in kpis}


CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "test-artifacts" / "readme" / "console-dashboard.png"
"""The README's screenshot (docs/images/console-dashboard.png) is a copy of this one."""


def _screenshot(url: str, token: str) -> None:
    """The dashboard at a laptop's 1366x768, with Debian's Chromium (when it is installed)."""
    if not CHROMIUM.exists():
        return
    from playwright.sync_api import sync_playwright

    from tests.console.test_browser import ARGS

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(60_000)
        page.goto(url + "login")
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/")
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        browser.close()


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    work = tmp_path_factory.mktemp("walkthrough")
    clone, home = work / "enforcer", work / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # The README's first command made .venv in the clone: this repository's, linked.
    (clone / ".venv").symlink_to(REPO / ".venv")
    with (clone / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".venv\n")
    status_before = _git("status", "--porcelain", "--untracked-files=all", cwd=clone)
    blocks = WALKTHROUGH.findall(README)
    server = SERVER.findall(README)
    assert len(blocks) >= 3 and len(server) == 1, "README's walkthrough markers are missing"
    script = work / "walkthrough.sh"
    script.write_text("\n".join(blocks) + "\n" + server[0])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENFORCER_", "VIRTUAL_ENV"))}
    env |= {
        "HOME": str(home), "TERM": "xterm", "COLUMNS": "200",
        # Port 8440 may be taken on a test machine: the server's port setting names a free one.
        "ENFORCER_SERVER_PORT": str(port),
        # The admin's git identity (a fresh home has no ~/.gitconfig).
        "GIT_AUTHOR_NAME": "Admin", "GIT_AUTHOR_EMAIL": "admin@example.org",
        "GIT_COMMITTER_NAME": "Admin", "GIT_COMMITTER_EMAIL": "admin@example.org",
    }  # fmt: skip
    shell = Terminal(script, clone, env)
    started = shell.read_until(re.compile(r'"server_starting".*\n'), 900)
    console: dict[str, str] = {}
    try:
        assert started, f"the walkthrough stopped before the server:\n{shell.text[-3000:]}"
        event = json.loads(
            next(line for line in shell.text.splitlines() if '"server_starting"' in line)
        )
        token = re.search(r"sign in to the console with: (\S+)", shell.text)
        assert token
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        console = _console(event["console_url"], token.group(1))
        _screenshot(event["console_url"], token.group(1))
        console["console_url"] = event["console_url"]
        console["policy_dir"] = event["policy_dir"]
    finally:
        os.write(shell.fd, b"\x03")  # Ctrl-C, as the admin stops the server
        code = shell.finish()
    status_after = _git("status", "--porcelain", "--untracked-files=all", cwd=clone)
    yield Walk(shell.text, code, console, status_before, status_after)


def test_the_walkthrough_runs_and_leaves_the_clone_clean(walk: Walk) -> None:
    assert "Applied. The store is at revision 1." in walk.output
    assert "Applied. The store is at revision 2." in walk.output  # the reviewed mega.plan
    assert "Plan: 0 to add, 0 to change, 4 to destroy." in walk.output
    assert walk.status_before == "" and walk.status_after == ""


def test_the_console_shows_the_month_of_sample_data(walk: Walk) -> None:
    assert walk.console["devices"] == "50"
    assert int(walk.console["discovered apps"]) >= 25
    assert walk.console["policy_dir"].endswith("/home/enforcer-policies")
    assert walk.console["console_url"].endswith("/console/")


def test_the_readme_figures_are_what_the_walkthrough_printed(walk: Walk) -> None:
    printed = walk.output.splitlines()
    blocks = FIGURES.findall(README)
    assert len(blocks) >= 2
    for block in blocks:
        at = 0
        for line in block.splitlines():
            if line.strip() in ("", "..."):
                continue
            found = next(
                (
                    n
                    for n in range(at, len(printed))
                    if printed[n].rstrip().startswith(line.rstrip())
                ),
                None,
            )
            assert found is not None, f"README figure not printed (or out of order): {line!r}"
            at = found + 1
