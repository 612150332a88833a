"""Streaming a log file into lines, whatever its size, gzip or not, and whatever its content.

Uploaded logs can be tens of gigabytes, so nothing here reads a whole file: lines come from a
buffered binary stream (constant memory), gzip is recognised by its magic bytes rather than the
file name (rotated logs are often ``access.log.1.gz`` or have no suffix at all), and undecodable
bytes become U+FFFD instead of failing the upload (the line is then reported by its parser if it
matters); a UTF-8 byte order mark (Windows exports) is dropped.

Hostile files are bounded (`ReadLimits`): a line longer than ``max_line`` bytes is never held in
memory (a 4 MB gzip file can expand to one 4 GB line), it is skipped and reported as a bad line;
a gzip file that expands to more than ``max_expansion`` times its own size (real logs compress
about 10 times, a decompression bomb 1,000 times) is read up to that size and the rest is
reported as one bad line. Truncated or damaged gzip data is a `FormatError` naming where it
stopped, not a traceback.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from enforcer.config import Settings
from enforcer.discovery.formats import parser_for
from enforcer.discovery.records import BadLine, FormatError, Record, bad_line

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
BUFFER = 1 << 20
EXPANSION_SLACK = 1 << 20
"""Bytes a gzip file may always expand to, whatever its size (a tiny file of a few lines)."""


@dataclass(frozen=True)
class ReadLimits:
    """How much of a log file is read (``ENFORCER_DISCOVERY_MAX_LINE``, ``..._MAX_EXPANSION``)."""

    max_line: int = 65_536
    """Longest line read, in bytes; a longer one is a bad line."""
    max_expansion: float = 100.0
    """A gzip file is read up to this many times its own size; the rest is a bad line."""

    @classmethod
    def of(cls, settings: Settings) -> ReadLimits:
        """The limits the settings name."""
        return cls(settings.discovery_max_line, settings.discovery_max_expansion)


Refuse = Callable[[BadLine], None]
"""Told about each part of a file that was not read (a line too long, the rest of a bomb)."""


def open_lines(
    path: Path, limits: ReadLimits | None = None, on_refused: Refuse | None = None
) -> Iterator[str]:
    """The lines of `path` (ending in ``\\n`` except perhaps the last), decompressed if gzip.

    A line longer than the limit is passed on as an empty line (so that line numbers stay
    right) and reported to `on_refused`, as is the rest of a gzip file past its expansion limit.
    """
    limits = limits or ReadLimits()
    refuse = on_refused or (lambda _: None)
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] != GZIP_MAGIC:
            yield from _lines(raw, limits.max_line, None, refuse, "")
            return
        size = Path(path).stat().st_size
        budget = int(size * limits.max_expansion) + EXPANSION_SLACK
        # GzipFile buffers a little itself: a bigger buffer in front would lose the lines
        # before the damage of a truncated file.
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        yield from _lines(gz, limits.max_line, budget, refuse, "the gzip data ")


def _lines(
    binary: io.BufferedIOBase, max_line: int, budget: int | None, refuse: Refuse, what: str
) -> Iterator[str]:
    limit = max_line + 1  # and its newline
    line_no = 0
    total = 0
    readline = binary.readline
    while True:
        try:
            chunk = readline(limit)
            if not chunk:
                return
            line_no += 1
            total += len(chunk)
            if len(chunk) == limit and chunk[-1:] != b"\n":
                start = chunk[:200].decode("utf-8", "replace")
                total += _skip_line(binary, None if budget is None else budget - total)
                refuse(bad_line(line_no, f"line longer than {max_line} bytes: not read", start))
                chunk = b"\n"
        except (OSError, EOFError, zlib.error) as exc:
            raise FormatError(
                f"cannot read: {what}is truncated or damaged after line {line_no} ({exc})",
                line=line_no + 1,
            ) from None
        if budget is not None and total > budget:
            refuse(
                bad_line(
                    line_no,
                    f"the file expands to more than {budget:,} bytes (a decompression bomb?): "
                    "the rest was not read",
                    "",
                )
            )
            return
        if line_no == 1 and chunk.startswith(BOM):
            chunk = chunk[len(BOM) :]
        yield chunk.decode("utf-8", "replace")


def _skip_line(binary: io.BufferedIOBase, budget: int | None) -> int:
    """Read past the rest of the current line without keeping it; returns the bytes read
    (stopping early once past `budget`)."""
    skipped = 0
    while budget is None or skipped <= budget:
        piece = binary.readline(BUFFER)
        skipped += len(piece)
        if not piece or piece.endswith(b"\n"):
            break
    return skipped


def parse_file(
    path: Path, format_name: str, mapping: str | None = None, limits: ReadLimits | None = None
) -> Iterator[Record | BadLine]:
    """`open_lines` through the format's parser (the parts not read as bad lines); a
    `FormatError` names the file."""
    parse = parser_for(format_name, mapping)
    refused: list[BadLine] = []
    try:
        for item in parse(open_lines(path, limits, refused.append)):
            yield from refused
            refused.clear()
            yield item
        yield from refused
    except FormatError as exc:
        raise exc.with_file(str(path)) from None
    except OSError as exc:  # an unreadable file
        raise FormatError(f"cannot read: {exc}", file=str(path)) from None
