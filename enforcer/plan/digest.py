"""Per-bucket digests that let a no-op plan skip reading the store.

Every managed indicator falls in one of `BUCKETS` buckets by a hash of its value, and each
bucket's digest is the sum (mod 2**64) of its indicators' content hashes (XXH3 of
`Indicator.canonical`). Equal digests mean equal buckets (up to a 64-bit hash collision), so
reconcile only reads and compares the buckets whose digests differ. The store keeps the digests
of what it holds; `digest_indicators` computes those of a desired set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from xxhash import xxh3_64_intdigest

from enforcer.gcpause import paused_gc
from enforcer.models import Indicator

BUCKETS = 1 << 16
_MASK64 = (1 << 64) - 1

Key = tuple[str, str]
"""An indicator's identity: (scope, value)."""


def bucket_of(scope: str, value: str) -> int:
    """The digest bucket of an indicator key (stable across processes and machines).

    Only the value is hashed: the same domain in several scopes shares a bucket, which is fine.
    """
    return xxh3_64_intdigest(value.encode()) & (BUCKETS - 1)


class BucketDigest(NamedTuple):
    """Digest and size of one bucket of managed indicators."""

    digest: int
    size: int


@dataclass
class DesiredDigest:
    """Digests of a desired indicator set, per bucket."""

    buckets: dict[int, BucketDigest]


def digest_indicators(indicators: Iterable[Indicator]) -> DesiredDigest:
    """Per-bucket digests of a set of indicators (order does not matter). The hot loop of a plan."""
    sums: dict[int, int] = {}
    counts: dict[int, int] = {}
    xxh = xxh3_64_intdigest
    mask = BUCKETS - 1
    with paused_gc():
        for ind in indicators:
            bucket = xxh(ind.value.encode()) & mask
            h = xxh(ind.canonical().encode())
            if bucket in sums:
                sums[bucket] = (sums[bucket] + h) & _MASK64
                counts[bucket] += 1
            else:
                sums[bucket] = h
                counts[bucket] = 1
        buckets = {b: BucketDigest(s, counts[b]) for b, s in sums.items()}
    return DesiredDigest(buckets=buckets)


def keys_in_buckets(keys: Iterable[Key], buckets: set[int]) -> dict[int, list[Key]]:
    """The keys that fall in some buckets, grouped by bucket (a second, cheap pass)."""
    out: dict[int, list[Key]] = {}
    if not buckets:
        return out
    xxh = xxh3_64_intdigest
    mask = BUCKETS - 1
    with paused_gc():
        for key in keys:
            bucket = xxh(key[1].encode()) & mask
            if bucket in buckets:
                out.setdefault(bucket, []).append(key)
    return out


def dirty_buckets(
    desired: Mapping[int, BucketDigest], actual: Mapping[int, BucketDigest]
) -> set[int]:
    """Buckets whose contents differ between the desired set and the store."""
    return {b for b in desired.keys() | actual.keys() if desired.get(b) != actual.get(b)}
