"""Streaming a log file into lines, whatever its size, gzip or not.

Uploaded logs can be tens of gigabytes, so nothing here reads a whole file: lines come from a
buffered text stream (constant memory), gzip is recognised by its magic bytes rather than the file
name (rotated logs are often ``access.log.1.gz`` or have no suffix at all), and undecodable bytes
become U+FFFD instead of failing the upload (the line is then reported by its parser if it matters);
a UTF-8 byte order mark (Windows exports) is dropped.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from enforcer.discovery.formats import parser_for
from enforcer.discovery.records import BadLine, FormatError, Record

GZIP_MAGIC = b"\x1f\x8b"
BUFFER = 1 << 20


def open_lines(path: Path) -> Iterator[str]:
    """The lines of `path` (ending in ``\\n`` except perhaps the last), decompressed if gzip."""
    with open(path, "rb") as raw:
        binary = raw
        if raw.peek(2)[:2] == GZIP_MAGIC:
            binary = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), BUFFER)
        yield from io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="\n")


def parse_file(
    path: Path, format_name: str, mapping: str | None = None
) -> Iterator[Record | BadLine]:
    """`open_lines` through the format's parser; a `FormatError` names the file."""
    parse = parser_for(format_name, mapping)
    try:
        yield from parse(open_lines(path))
    except FormatError as exc:
        raise exc.with_file(str(path)) from None
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip member, an unreadable file
        raise FormatError(f"cannot read: {exc}", file=str(path)) from None
