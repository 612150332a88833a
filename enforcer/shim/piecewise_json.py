"""`iter_loads`: `json.loads` of a large object of arrays, one array element per step.

The shim must keep answering DNS while it takes in a sync answer of 100,000 indicators (17 MB
of JSON). `json.loads` is one call into C that holds the GIL for the whole document (about
0.3 s), whether it runs on the event loop or in a worker thread; and a worker thread that parses
in many small calls is worse, because every system call of the loop then waits up to the
interpreter's switch interval to get the GIL back (the "convoy effect"). So the shim parses on the
loop itself, in steps: `iter_loads` is a generator that parses the top-level object's arrays one
element at a time and yields between elements, and the caller yields to the event loop every
millisecond of work (`enforcer.shim.sync.receive_update`).

The result is the same as `json.loads` for any JSON text; non-array values and the elements
themselves are parsed by the standard decoder. Malformed text raises `json.JSONDecodeError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from typing import Any

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]


def iter_loads(text: str) -> Generator[None, None, Any]:
    """Parse `text` like `json.loads`, yielding after each element of the top-level object's
    arrays; the generator's return value (``StopIteration.value``) is the document."""
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        return json.loads(text)
    out: dict[str, Any] = {}
    pos = _skip(text, pos + 1)
    if text.startswith("}", pos):
        return _end(text, out, pos + 1)
    while True:
        if not text.startswith('"', pos):
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, pos
            )
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _skip(text, pos + 1)
        if text.startswith("[", pos):
            out[key], pos = yield from _array(text, pos + 1)
        else:
            out[key], pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text.startswith("}", pos):
            return _end(text, out, pos + 1)
        if not text.startswith(",", pos):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = _skip(text, pos + 1)


def loads_piecewise(text: str) -> Any:
    """`iter_loads` run to the end at once."""
    parser = iter_loads(text)
    while True:
        try:
            next(parser)
        except StopIteration as done:
            return done.value


def _array(text: str, pos: int) -> Generator[None, None, tuple[list[Any], int]]:
    """The elements of the array whose ``[`` ends at `pos`, and the position after its ``]``."""
    decode = _DECODER.raw_decode
    space = _SPACE.match
    items: list[Any] = []
    pos = _skip(text, pos)
    if text.startswith("]", pos):
        return items, pos + 1
    while True:
        item, pos = decode(text, pos)
        items.append(item)
        yield
        pos = space(text, pos).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            return items, pos + 1
        if not text.startswith(",", pos):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = space(text, pos + 1).end()  # type: ignore[union-attr]


def _end(text: str, out: dict[str, Any], pos: int) -> dict[str, Any]:
    if _skip(text, pos) != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)
    return out
