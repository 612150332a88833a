"""Fuzz the discovery pipeline end to end: log lines -> parser -> Aggregator -> rollup -> store.

`tests/discovery` already feeds every parser arbitrary text and checks it only yields `Record`
or `BadLine`. What it does not check is the rest of the way: a line a parser *accepts* with an
extreme value in it (a time of 1e300, a byte count of 2**63, a host of 253 characters) must not
crash the aggregation or the store write that follows, since one such line in an uploaded log
(or over syslog) would otherwise refuse the whole upload. So the inputs here are the real sample
logs of `examples/logs` with some fields replaced by edge values, as a hostile or broken device
would write them, and the store is real (SQLite, and PostgreSQL when configured).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.formats import parser_for
from enforcer.discovery.records import BadLine, FormatError, Record
from enforcer.discovery.syslog import parse_syslog
from enforcer.store.rollups import merge_rollup
from tests.hardening.fuzzing import fuzz

pytestmark = pytest.mark.fuzz

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"
SAMPLES: dict[str, tuple[str | None, str]] = {
    "squid": (None, "squid-access.log"),
    "zeek": (None, "zeek-http.log"),
    "zeek-json": (None, "zeek-ssl.json"),
    "w3c": (None, "proxysg-w3c.log"),
    "panos": (None, "panos-traffic.csv"),
    "zscaler-nss": (None, "zscaler-nss.log"),
    "zscaler-nss-kv": (None, "zscaler-nss-kv.log"),
    "csv": (
        "time=timestamp:iso,src_ip=client_ip,user=username,device=device,host=dest_host,"
        "dest_port=dest_port,bytes_up=sent,bytes_down=received,action=verdict",
        "generic.csv",
    ),
    "jsonl": (
        "time=ts:epoch,src_ip=source.ip,user=source.user,device=source.host,url=url,"
        "bytes_up=bytes.out,bytes_down=bytes.in,action=decision",
        "generic.jsonl",
    ),
}
LINES = {key: (LOGS / name).read_text().splitlines()[:12] for key, (_, name) in SAMPLES.items()}

EDGE = st.sampled_from(
    ["", "-", "0", "-1", "1e300", "-1e300", "inf", "nan", "1e18", "9" * 30, "18446744073709551616",
     "9223372036854775808", "0x10", "2025-13-45T99:99:99Z", "0001-01-01T00:00:00Z",
     "9999-12-31T23:59:59Z", "x" * 300, "a." * 130, "\x00", "é", "[::1]", "999.1.1.1", '"', "\\"]
)  # fmt: skip
TOKEN = re.compile(r'[^\s,"\t=:{}]+')


@st.composite
def damaged_log(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A sample log of some format, with a few of its tokens replaced by edge values."""
    key = draw(st.sampled_from(sorted(SAMPLES)))
    lines = list(LINES[key])
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(lines) - 1))
        tokens = list(TOKEN.finditer(lines[index]))
        if not tokens:
            continue
        m = tokens[draw(st.integers(0, len(tokens) - 1))]
        value = draw(EDGE | st.text(max_size=20))
        lines[index] = lines[index][: m.start()] + value + lines[index][m.end() :]
    return key, lines


def _ingest(engine: Engine, catalog: Catalog, key: str, lines: list[str]) -> None:
    mapping, _ = SAMPLES[key]
    parse = parser_for(key.removesuffix("-json").removesuffix("-kv"), mapping)
    aggregator = Aggregator(Attributor(catalog), max_keys=8)
    bad: list[BadLine] = []
    try:
        aggregator.add_all(
            parse(line + "\n" for line in lines),
            on_bad=bad.append,
            on_full=lambda: merge_rollup(engine, aggregator.rollup()),
        )
    except FormatError:
        return  # a whole-file problem (a damaged header), reported as such
    merge_rollup(engine, aggregator.rollup())
    assert aggregator.records + len(bad) <= len(lines)


@fuzz(120)
@given(damaged_log())
def test_damaged_logs_are_ingested_or_reported(
    engine: Engine, catalog: Catalog, log: tuple[str, list[str]]
) -> None:
    _ingest(engine, catalog, *log)


@fuzz(120)
@given(
    st.builds(
        Record,
        time=st.floats(-1e12, 1e12) | st.sampled_from([0.0, 1763625600.0]),
        host=st.text(max_size=60) | st.sampled_from(["www.boxy.example", ""]),
        src_ip=st.text(max_size=20),
        user=st.text(max_size=20),
        device=st.text(max_size=20),
        dest_port=st.integers(0, 65535),
        bytes_up=st.integers(0, 2**63 - 1),
        bytes_down=st.integers(0, 2**63 - 1),
        action=st.sampled_from(["", "allowed", "blocked"]),
    )
)
def test_any_record_a_parser_may_yield_is_stored(
    engine: Engine, catalog: Catalog, record: Record
) -> None:
    """A `Record` within the bounds the parsers enforce reaches the store (twice: sums grow)."""
    aggregator = Aggregator(Attributor(catalog))
    aggregator.add_all([record, record])
    merge_rollup(engine, aggregator.rollup())


@fuzz()
@given(st.sampled_from(sorted(SAMPLES)), st.binary(max_size=200))
def test_syslog_frames_through_each_parser(key: str, frame: bytes) -> None:
    """What the syslog collector hands a parser: the payload of any datagram."""
    mapping, _ = SAMPLES[key]
    parse = parser_for(key.removesuffix("-json").removesuffix("-kv"), mapping)
    payload = parse_syslog(frame).payload
    try:
        for item in parse([payload + "\n", *LINES[key][:2]]):
            assert isinstance(item, Record | BadLine)
    except FormatError:
        pass
