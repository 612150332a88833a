"""How the discovery rollup tables encode their keys and distinct sets.

Rows are keyed by day number (days since the epoch, UTC). Distinct users, devices and addresses
are bitsets of entity ordinals (`enforcer.store.entities` numbers the names), stored as
little-endian bytes: `bits_of` builds one from ordinals, `ordinals_in` lists the ordinals back,
and a range query ORs the days' bitsets and counts the bits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def to_bytes(bits: int) -> bytes:
    """A bitset as stored."""
    return bits.to_bytes((bits.bit_length() + 7) // 8 or 1, "little")


def from_bytes(data: bytes | None) -> int:
    """A stored bitset (None or empty: no bits)."""
    return int.from_bytes(data or b"", "little")


def bits_of(ordinals: Iterable[int]) -> int:
    """The bitset with these ordinals set."""
    bits = 0
    for o in ordinals:
        bits |= 1 << o
    return bits


def ordinals_in(bits: int) -> list[int]:
    """The ordinals set in a bitset, lowest first."""
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


def day_of(when: dt.datetime) -> int:
    """The day number of a time (the rollups' day key)."""
    return int(when.timestamp() // 86400)
