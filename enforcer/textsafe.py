"""Text from devices and logs made safe where admins read it: CSV cells, terminals, the console.

Host names, user names, process names and domains come from devices and uploaded logs, so
anyone who controls one of those controls the text. Three places read it:

* a spreadsheet opening a CSV export runs a cell that starts with ``=``, ``+``, ``-``, ``@``,
  a tab or a carriage return as a formula (OWASP "CSV injection"): `csv_cell` prefixes such a
  text with ``'``, which spreadsheets show and do not run;
* a terminal obeys control characters (ESC sequences can rewrite the screen, set the window
  title, or hide text) and bidirectional controls reorder what it shows (``gpj.exe`` looking
  like ``exe.jpg``): `for_terminal` shows each as a visible escape, and `cut` keeps a long
  name from pushing a table's columns off screen;
* the console (HTML escapes markup already) shows bidirectional controls visibly
  (`visible_bidi`), and `download_name` keeps a file name in a Content-Disposition header to
  characters no browser or shell misreads.
"""

from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_BIDI = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_TERMINAL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_TERMINAL.update({c: f"\\u{c:04x}" for c in _BIDI})
_CONSOLE = {c: f"[U+{c:04X}]" for c in _BIDI}
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def csv_cell(value: object) -> object:
    """`value` for a CSV cell: a text that a spreadsheet would run as a formula gets a ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def for_terminal(text: str) -> str:
    """`text` with control and bidirectional characters shown as escapes (``\\x1b``)."""
    return text.translate(_TERMINAL) if not text.isprintable() or _has_bidi(text) else text


def cut(text: str, width: int) -> str:
    """`text` safe for a terminal and at most `width` characters (``…`` marks a cut)."""
    text = for_terminal(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def visible_bidi(text: str) -> str:
    """`text` with bidirectional controls shown as ``[U+202E]`` (for HTML pages)."""
    return text.translate(_CONSOLE) if _has_bidi(text) else text


def download_name(name: str, default: str = "download") -> str:
    """A file name for a download: letters, digits, ``.``, ``_`` and ``-`` only, at most 100."""
    cleaned = _UNSAFE_FILE_CHARS.sub("_", name).strip("._")[:100]
    return cleaned or default


def _has_bidi(text: str) -> bool:
    return not text.isascii() and any(ord(ch) in _BIDI for ch in text)
