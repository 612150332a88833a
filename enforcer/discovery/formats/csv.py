"""Generic CSV with a user-supplied column mapping (``--format csv --map field=column,...``).

For exports from anything without a parser of its own. The first line is the header naming the
columns; the delimiter (``,``, tab, ``;`` or ``|``) is the one the header uses most. Quoted fields
follow RFC 4180 (a quoted field may span lines; the line number reported is the record's first).
See `enforcer.discovery.formats._mapping` for the mapping.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from itertools import chain

from enforcer.discovery.formats._mapping import Mapping
from enforcer.discovery.records import BadLine, FormatError, Record, bad_line

DELIMITERS = ",\t;|"


def parse(lines: Iterable[str], mapping: str | dict[str, str]) -> Iterator[Record | BadLine]:
    """Records from CSV lines whose header names the mapped columns."""
    checked = Mapping.of(mapping)
    it = iter(lines)
    blank = 0  # blank lines before the header, which the csv reader does not see
    header_line = next(it, None)
    while header_line is not None and not header_line.strip():
        blank += 1
        header_line = next(it, None)
    if header_line is None:
        return
    header_line = header_line.removeprefix("\ufeff")  # Excel's UTF-8 export starts with a BOM
    delimiter = max(DELIMITERS, key=header_line.count)
    reader = csv.reader(chain([header_line], it), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        raise FormatError(f"bad CSV header: {exc}", line=reader.line_num + blank) from None
    missing = [c for c in checked.columns.values() if c not in header]
    if missing:
        raise FormatError(f"no column {missing[0]!r} in the header", line=reader.line_num + blank)
    index = {name: i for i, name in enumerate(header)}
    last = reader.line_num
    while True:
        line_no = last + 1 + blank
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield bad_line(line_no, f"bad CSV: {exc}", "")
            last = reader.line_num
            continue
        last = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            yield bad_line(
                line_no, f"expected {len(header)} fields, got {len(row)}", delimiter.join(row)
            )
            continue
        try:
            yield checked.record(lambda column: row[index[column]])  # noqa: B023
        except ValueError as exc:
            yield bad_line(line_no, str(exc), delimiter.join(row))
