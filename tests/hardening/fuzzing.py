"""Hypothesis settings for the hardening suite, and strategies shared by its fuzz targets.

Two profiles, chosen with ``HYPOTHESIS_PROFILE`` (default ``hardening-ci``):

* ``hardening-ci``: what CI runs. Each target is bounded (`CI_EXAMPLES` inputs, derandomized so
  that a CI run never fails on an input no one can reproduce; the long run explores).
* ``long``: ``HYPOTHESIS_PROFILE=long pytest tests/hardening -m fuzz -p no:timeout
  --hypothesis-show-statistics``: `LONG_EXAMPLES` random inputs per target (20,000, or
  ``HARDENING_LONG_EXAMPLES``). A failure it finds is printed with its minimal input, which
  becomes an ``@example`` of the target (a regression test).

The profiles are applied per test through `fuzz`, not loaded globally, so that importing this
suite never changes the settings of the rest of the test session.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CI_EXAMPLES = 200
LONG_EXAMPLES = int(os.environ.get("HARDENING_LONG_EXAMPLES", "20000"))
"""Inputs per target in the long profile (the slow targets are scaled down from it)."""

settings.register_profile(
    "hardening-ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=LONG_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "hardening-ci")
if PROFILE not in ("hardening-ci", "long"):
    PROFILE = "hardening-ci"


def fuzz(max_examples: int | None = None) -> settings:
    """The active profile's settings; `max_examples` scales a slow target down in both profiles."""
    base = settings.get_profile(PROFILE)
    if max_examples is None:
        return settings(base)
    scale = base.max_examples / CI_EXAMPLES
    return settings(base, max_examples=max(1, int(max_examples * scale)))


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", "0", "-1", "1e309", "2026-11-25T10:00:00Z", "0001-01-01T00:00:00+05:00",
                       "9999-12-31T23:59:59-05:00", "\x00", "\ud800", "Block", "sanctioned"])
)  # fmt: skip
"""Leaves a JSON document (or a YAML one) may hold, including the edges parsers trip on."""

JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
"""Arbitrary JSON-like values (Python's json module also accepts NaN and Infinity)."""


def mutations(seed: Any) -> st.SearchStrategy[Any]:
    """Copies of `seed` with some subtrees replaced by arbitrary values, keys dropped or added.

    Random JSON rarely gets past a schema's first check; a valid document with one bad leaf
    reaches the code behind it, which is where a crash hides.
    """
    if isinstance(seed, dict):
        mutated = st.fixed_dictionaries(
            {k: mutations(v) for k, v in seed.items()}, optional={"x-extra": JSON}
        )
        return st.one_of(
            JSON,
            mutated,
            mutated.flatmap(
                lambda d: st.sets(st.sampled_from(sorted(d)), max_size=2).map(
                    lambda drop: {k: v for k, v in d.items() if k not in drop}
                )
            ),
        )
    if isinstance(seed, list):
        if not seed:
            return st.one_of(st.just([]), st.lists(JSON, max_size=3))
        return st.one_of(
            st.tuples(*(mutations(v) for v in seed[:4])).map(list),
            st.lists(mutations(seed[0]), max_size=4),
            JSON,
        )
    return st.one_of(st.just(seed), SCALARS)
