"""Generic JSON lines with a user-supplied key mapping (``--format jsonl --map field=key,...``).

One JSON object per line. A key is looked up as written first (``id.orig_h``), then as a dotted
path into nested objects (``source.ip`` → ``{"source": {"ip": ...}}``). See
`enforcer.discovery.formats._mapping` for the mapping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from enforcer.discovery.formats._mapping import Mapping
from enforcer.discovery.records import BadLine, Record, bad_line


def lookup(obj: dict[str, Any], key: str) -> object:
    """`obj[key]`, else the value at the dotted path `key`, else None."""
    if key in obj:
        return obj[key]
    value: object = obj
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def parse(lines: Iterable[str], mapping: str | dict[str, str]) -> Iterator[Record | BadLine]:
    """Records from JSON lines; blank lines are skipped."""
    checked = Mapping.of(mapping)
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield bad_line(line_no, f"not JSON: {exc}", line)
            continue
        except RecursionError:  # json's C parser recurses per level: a parser bomb
            yield bad_line(line_no, "not JSON: nested too deeply", line)
            continue
        if not isinstance(obj, dict):
            yield bad_line(line_no, "not a JSON object", line)
            continue
        try:
            yield checked.record(lambda key: lookup(obj, key))  # noqa: B023
        except ValueError as exc:
            yield bad_line(line_no, str(exc), line)
