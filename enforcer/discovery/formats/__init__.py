"""Log formats: one module per format, each with ``parse(lines) -> Iterator[Record | BadLine]``.

Adding a format means adding its module and one line to `FORMATS` (the CLI, the API and the
tests all list formats from it). The mapped
formats (``csv``, ``jsonl``) take the ``--map`` mapping as a second argument; `parser_for` binds it
so that every caller sees the same one-argument parser.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import IO

from enforcer.discovery.formats import csv, jsonl, panos, squid, w3c, zeek, zscaler_nss
from enforcer.discovery.formats._mapping import parse_mapping
from enforcer.discovery.records import BadLine, FormatError, Record

Parser = Callable[[Iterable[str]], Iterator[Record | BadLine]]

FORMATS: dict[str, Callable[..., Iterator[Record | BadLine]]] = {
    "squid": squid.parse,
    "zeek": zeek.parse,
    "w3c": w3c.parse,
    "panos": panos.parse,
    "zscaler-nss": zscaler_nss.parse,
    "csv": csv.parse,
    "jsonl": jsonl.parse,
}
"""Format name (as in ``--format``) → its parse function."""

MAPPED = frozenset({"csv", "jsonl"})
"""Formats that need ``--map``."""


def parser_for(name: str, mapping: str | None = None) -> Parser:
    """The parser for `name`, with `mapping` bound for the mapped formats.

    Raises `FormatError` for an unknown format, a mapped format without a mapping, a mapping given
    to a format that takes none, or a bad mapping (checked here, before any line is read).
    """
    parse = FORMATS.get(name)
    if parse is None:
        raise FormatError(f"unknown format {name!r}: one of {', '.join(FORMATS)}")
    if name in MAPPED:
        if not mapping:
            raise FormatError(f"format {name!r} needs --map field=column,...")
        return partial(parse, mapping=parse_mapping(mapping))
    if mapping:
        raise FormatError(f"format {name!r} takes no --map")
    return parse


def sniff(lines: Iterable[str]) -> str | None:
    """The format (of those that need no mapping) that reads most of `lines`, the first lines
    of a file: what an upload in the wrong format suggests. None when none reads any."""
    sample = [line for line in lines if line.strip()][:50]
    best, best_count = None, 0
    for name, parse in FORMATS.items():
        if name in MAPPED:
            continue
        try:
            count = sum(isinstance(item, Record) for item in parse(iter(sample)))
        except (FormatError, ValueError, UnicodeError):
            continue
        if count > best_count:
            best, best_count = name, count
    return best


def sniff_file(path: Path) -> str | None:
    """`sniff` over the first 200 lines of a log file (gzip or plain); None when unreadable."""
    try:
        with path.open("rb") as raw:
            head = raw.read(2)
        opener: Callable[..., IO[str]] = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as text:
            lines = [line for _, line in zip(range(200), text, strict=False)]
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return sniff(lines)


def wrong_format_hint(path: Path, fmt: str) -> str:
    """``; NAME looks like FORMAT (--format FORMAT)`` when another format reads `path`, else ``""``:
    what an upload from which no line parsed says."""
    found = sniff_file(path)
    if found is None or found == fmt:
        return ""
    return f"; {path.name} looks like {found} (--format {found})"


__all__ = [
    "FORMATS",
    "MAPPED",
    "Parser",
    "parse_mapping",
    "parser_for",
    "sniff",
    "sniff_file",
    "wrong_format_hint",
]
