"""Desktop notifications: how the shim tells the user about a denied HTTPS connection.

A proxy cannot show a page inside an HTTPS connection without decrypting it, so when it denies
one it pops a notification instead (``notify-send`` on Linux desktops, ``osascript`` on macOS),
pointing to the shim's own warning page where that is useful. A missing tool, no desktop session
or a failing command must never disturb the proxy, so `notify` never raises and never waits.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

Notifier = Callable[[str, str], None]
"""A function that shows (title, body) to the user; the proxy takes one so tests can inject."""

APP_NAME = "Enforcer"


def command(title: str, body: str, platform: str = sys.platform) -> list[str] | None:
    """The command line that shows the notification on `platform`, or None if it has no tool."""
    if platform == "darwin":
        tool = shutil.which("osascript")
        if tool is None:
            return None
        script = f"display notification {_applescript(body)} with title {_applescript(title)}"
        return [tool, "-e", script]
    tool = shutil.which("notify-send")
    if tool is None:
        return None
    # "--" keeps a body starting with "-" from being read as an option.
    return [tool, "--app-name", APP_NAME, "--", title, body]


def notify(title: str, body: str) -> None:
    """Show a desktop notification if the platform has a tool for it; never raises or blocks."""
    argv = command(title, body)
    if argv is None:
        log.debug("no desktop notification tool: %s: %s", title, body)
        return
    try:
        # Not waited for: the subprocess module reaps finished children on later calls.
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("desktop notification failed: %s", exc)


def _applescript(text: str) -> str:
    """Quote text as an AppleScript string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
