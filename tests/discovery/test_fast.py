"""The fused Squid and Zeek loops (`enforcer.discovery.fused`) agree with parse -> add_all.

The general path is the definition; the fused loops are an optimisation of it. Both are run on
the real sample logs, on damaged copies of them (fields replaced by edge values, lines cut,
comments, headers changed mid-file, JSON among TSV) and with a `max_keys` small enough that the
accumulator is flushed many times; the rollups (merged over every flush), the counters and the
bad lines (number, reason, text) must be the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.formats import parser_for
from enforcer.discovery.fused import LOOPS
from enforcer.discovery.records import BadLine, FormatError
from enforcer.rollup import Rollup, Usage
from tests.hardening.fuzzing import fuzz

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"
SAMPLES = {
    "squid": ["squid-access.log"],
    "zeek": ["zeek-http.log", "zeek-conn.log", "zeek-ssl.json"],
}
LINES = {
    (fmt, name): (LOGS / name).read_text().splitlines(keepends=True)
    for fmt, names in SAMPLES.items()
    for name in names
}
USERNAME_LAST = [
    "#separator \\x09\n",
    "#unset_field\t-\n",
    "#path\thttp\n",
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\thost\trequest_body_len"
    "\tresponse_body_len\tusername\n",
    "1763625600.5\tC1\t10.0.0.5\t50000\t1.2.3.4\t443\twww.boxy.example\t10\t2000\talice\n",
    "1763625601.5\tC2\t10.0.0.6\t50001\t1.2.3.4\t443\tsharefast.example\t0\t90\tbob\r\n",
    "1763625602.5\tC3\t10.0.0.6\t50001\t1.2.3.4\t443\tsharefast.example\t0\t90\tbob\textra\n",
    "1763625603.5\tC4\t10.0.0.7\t50002\t1.2.3.4\t443\tpastey.example\t5\n",
    "1763625604.5\tC5\t10.0.0.7\t-\t-\t-\t(empty)\t-\t-\t(empty)",
]
"""A layout whose last column is one the parser reads (the benchmark's): the fused loop then
splits whole lines and counts fields instead of separators."""
LINES[("zeek", "username-last")] = USERNAME_LAST
EDGE = ["", "-", "(empty)", "0", "-1", "1e300", "nan", "inf", "9" * 30, "9223372036854775808",
        "١٢", "1_000", " ", "#", "TCP_DENIED/403", "WWW.Example.COM.", "[::1]:443", "10.0.0.1",
        "http://a.example:99999/x", "error:invalid-request", "#fields\tts", "{}", "\x00"]  # fmt: skip
TOKEN = re.compile(r"[^\s]+")

Merged = dict[str, dict[Any, Any]]


def _merge(rollups: list[Rollup]) -> Merged:
    """The sum of several flushes, as comparable plain values."""
    out: Merged = {"apps": {}, "devices": {}, "users": {}, "device_apps": {}, "hours": {}}

    def add(table: dict[Any, Any], key: Any, usage: Usage, *sets: set[str]) -> None:
        old = table.get(key)
        u = (usage.transactions, usage.bytes_up, usage.bytes_down, usage.blocked)
        if old is None:
            table[key] = [u, usage.first_seen, usage.last_seen, *(set(s) for s in sets)]
            return
        old[0] = tuple(a + b for a, b in zip(old[0], u, strict=True))
        old[1], old[2] = min(old[1], usage.first_seen), max(old[2], usage.last_seen)
        for mine, theirs in zip(old[3:], sets, strict=True):
            mine |= theirs

    for r in rollups:
        for k, a in r.apps.items():
            add(out["apps"], k, a.usage, a.devices, a.users, a.ips)
        for k, d in r.devices.items():
            add(out["devices"], k, d.usage, d.users, d.ips)
        for k, u in r.users.items():
            add(out["users"], k, u.usage, u.devices, u.apps)
        for k, usage in r.device_apps.items():
            add(out["device_apps"], k, usage)
        for k, usage in r.hours.items():
            add(out["hours"], k, usage)
            out["hours"][k][1:3] = [0, 0]  # the hourly table keeps no first/last seen
    return out


def _run(catalog: Catalog, fmt: str, lines: list[str], *, fused: bool, max_keys: int) -> Any:
    agg = Aggregator(Attributor(catalog), max_keys=max_keys)
    flushed: list[Rollup] = []
    bad: list[BadLine] = []
    try:
        if fused:
            LOOPS[fmt](agg, iter(lines), bad.append, lambda: flushed.append(agg.rollup()))
        else:
            agg.add_all(
                parser_for(fmt)(iter(lines)),
                on_bad=bad.append,
                on_full=lambda: flushed.append(agg.rollup()),
            )
    except FormatError as exc:
        return ("error", str(exc))
    flushed.append(agg.rollup())
    counts = (agg.records, agg.attributed, agg.unrecognised, agg.without_host)
    return _merge(flushed), counts, bad


def _same(catalog: Catalog, fmt: str, lines: list[str], max_keys: int = 200_000) -> None:
    general = _run(catalog, fmt, lines, fused=False, max_keys=max_keys)
    fused = _run(catalog, fmt, lines, fused=True, max_keys=max_keys)
    assert fused == general


@pytest.mark.parametrize("key", sorted(LINES), ids=lambda k: k[1])
@pytest.mark.parametrize("max_keys", [2, 200_000])
def test_sample_logs_give_the_same_rollups(
    catalog: Catalog, key: tuple[str, str], max_keys: int
) -> None:
    fmt, _ = key
    _same(catalog, fmt, LINES[key] * 3, max_keys)


def test_a_whole_line_layout_counts_fields_like_the_parser(catalog: Catalog) -> None:
    _same(catalog, "zeek", USERNAME_LAST)
    _, counts, bad = _run(catalog, "zeek", USERNAME_LAST, fused=True, max_keys=10)
    assert counts[0] == 3
    assert [(b.line_no, b.reason) for b in bad] == [
        (7, "expected 10 fields, got 11"),
        (8, "expected 10 fields, got 8"),
    ]


def test_every_kind_of_line_is_kept_by_both(catalog: Catalog) -> None:
    """Comments, blank lines, short lines, bad numbers and their reasons and line numbers."""
    lines = [
        "# a comment\n",
        "\n",
        "1763625600.000 10 10.0.0.5 TCP_TUNNEL/200 512 CONNECT www.boxy.example:443 alice HIER_DIRECT/1.2.3.4 -\n",
        "1763625600.000 10 10.0.0.5 TCP_TUNNEL/200\n",
        "yesterday 10 10.0.0.5 TCP_TUNNEL/200 512 CONNECT www.boxy.example:443 alice HIER_DIRECT/1.2.3.4 -\n",
        "1763625601.000 10 10.0.0.5 TCP_DENIED/403 -5 GET http://x.example/ - HIER_NONE/- -\n",
        "1763629300.5 10 10.0.0.6 TCP_DENIED/403 0 GET http://SHAREFAST.example./f - HIER_NONE/- -\n",
    ]  # fmt: skip
    _same(catalog, "squid", lines)
    _, counts, bad = _run(catalog, "squid", lines, fused=True, max_keys=10)
    assert counts[0] == 2
    assert [(b.line_no, b.reason) for b in bad] == [
        (4, "expected 10 fields, got 4"),
        (5, "bad time 'yesterday'"),
        (6, "bad byte count '-5'"),
    ]


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Sample lines of one format (Zeek: its logs concatenated), some tokens replaced, some
    lines dropped or repeated."""
    fmt = draw(st.sampled_from(sorted(SAMPLES)))
    lines = [line for key in sorted(LINES) if key[0] == fmt for line in LINES[key]]
    lines = (
        draw(st.lists(st.sampled_from(lines), min_size=1, max_size=30))
        if draw(st.booleans())
        else list(lines)
    )
    for _ in range(draw(st.integers(0, 8))):
        index = draw(st.integers(0, len(lines) - 1))
        tokens = list(TOKEN.finditer(lines[index]))
        if tokens:
            m = tokens[draw(st.integers(0, len(tokens) - 1))]
            value = draw(st.sampled_from(EDGE) | st.text(max_size=12))
            lines[index] = lines[index][: m.start()] + value + lines[index][m.end() :]
    return fmt, lines


@fuzz(150)
@given(damaged(), st.sampled_from([1, 3, 200_000]))
@example(("zeek", ["#separator \\x09\n", "#fields\tts\tid.orig_h\n", "1\t2\n"]), 200_000)
def test_damaged_logs_give_the_same_rollups_and_bad_lines(
    catalog: Catalog, log: tuple[str, list[str]], max_keys: int
) -> None:
    _same(catalog, *log, max_keys=max_keys)
