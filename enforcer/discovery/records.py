"""What every log format is turned into: one `Record` per connection or request, or a `BadLine`.

The records are plain named tuples (not dataclasses or pydantic models) because a parser yields
hundreds of thousands of them per second; the fields are the few facts Cloud Discovery needs to
attribute traffic to an app, a user and a device, whatever the source log calls them.
"""

from __future__ import annotations

from typing import NamedTuple

from enforcer.errors import PermanentError


class Record(NamedTuple):
    """One connection or request seen in a log, in UTC epoch seconds."""

    time: float
    """Epoch seconds (UTC)."""
    host: str
    """Destination host name: lower case, no port, no trailing dot; "" when only an IP is known;
    ``app:<catalog id>`` when the log names only the application (`formats.app_names`)."""
    src_ip: str
    """The device's (client's) IP address."""
    user: str = ""
    """Authenticated user when the log has one ("-" becomes "")."""
    device: str = ""
    """Device (host) name when the log has one."""
    dest_ip: str = ""
    dest_port: int = 0
    bytes_up: int = 0
    """Client to server."""
    bytes_down: int = 0
    """Server to client."""
    action: str = ""
    """"allowed" or "blocked" when the log says, else ""."""


APP_HOST = "app:"
"""A `Record.host` starting with this names a catalog app, not a host (no host name has a colon)."""


class BadLine(NamedTuple):
    """A line that could not be parsed: counted and reported, never dropped silently."""

    line_no: int
    """1-based physical line number in the file (headers and comments count)."""
    reason: str
    """For people: "expected 10 fields, got 7", "bad time 'x'"."""
    text: str
    """The line itself, truncated to 200 characters."""


class FormatError(PermanentError):
    """A problem fatal for the whole file: no Zeek `#fields` header, an unknown format, a bad `--map`.

    `line` is the 1-based line where it was found (0 when it is not about a line); `file` is filled
    in by whoever knows the file name (see `with_file`), so the message reads ``file:line: message``.
    """

    def __init__(self, message: str, *, line: int = 0, file: str = "") -> None:
        self.message = message
        self.line = line
        self.file = file
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return f"{where}: {self.message}" if where else self.message

    def with_file(self, file: str) -> FormatError:
        """The same error, naming `file`."""
        return FormatError(self.message, line=self.line, file=file)


MAX_TEXT = 200


def bad_line(line_no: int, reason: str, line: str) -> BadLine:
    """A `BadLine` with the line's end of line removed and its text truncated."""
    return BadLine(line_no, reason, line.rstrip("\r\n")[:MAX_TEXT])
