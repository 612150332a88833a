"""Decompression and parser bombs in uploaded logs: bounded memory, the refused part counted as
bad lines, a clear error for a damaged gzip file (the reader, and `enforcer discovery upload`)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from pathlib import Path

import pytest

from enforcer.discovery.reader import ReadLimits, open_lines, parse_file
from enforcer.discovery.records import BadLine, FormatError, Record
from tests.discovery.test_discovery_cli import LOGS, run

LINE = "1700000000.123 5 10.0.0.1 TCP_MISS/200 100 GET http://a.test/ - HIER_DIRECT/1.2.3.4 -\n"
HUGE = 64 << 20
"""One line of 64 MiB: the old reader held all of it (and its decoded copy) in memory."""


def gzip_bomb(path: Path, *parts: tuple[bytes, int]) -> Path:
    """A gzip file of `parts` (bytes, repeat) written in pieces (never whole in memory)."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        for data, times in parts:
            for _ in range(times):
                out.write(z.compress(data))
        out.write(z.flush())
    return path


def test_a_huge_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    path = gzip_bomb(
        tmp_path / "one-line.log.gz", (LINE.encode(), 1), (b"A" * (1 << 20), HUGE >> 20),
        (b"\n", 1), (LINE.encode(), 1),
    )  # fmt: skip
    refused: list[BadLine] = []
    tracemalloc.start()
    try:
        # (A repeated byte compresses 1,000 times: the expansion limit is opened for this.)
        limits = ReadLimits(max_line=65_536, max_expansion=100_000)
        lines = list(open_lines(path, limits, refused.append))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [LINE, "\n", LINE], "the long line is a blank one: numbers stay right"
    assert peak < 8 << 20, f"{peak:,} bytes held for a {HUGE:,}-byte line"
    assert [(b.line_no, b.reason) for b in refused] == [
        (2, "line longer than 65536 bytes: not read")
    ]
    assert refused[0].text == "A" * 200


def test_a_line_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a" * 300 + b"\n" + b"b" * 301 + b"\n" + b"c" * 300)
    refused: list[BadLine] = []
    lines = list(open_lines(path, ReadLimits(max_line=300), refused.append))
    assert lines == ["a" * 300 + "\n", "\n", "c" * 300]
    assert [b.line_no for b in refused] == [2]


def test_a_decompression_bomb_is_read_up_to_its_expansion_limit(tmp_path: Path) -> None:
    path = gzip_bomb(tmp_path / "bomb.gz", (LINE.encode() * 1000, 500))  # 45 MB of lines
    size = path.stat().st_size
    refused: list[BadLine] = []
    count = sum(1 for _ in open_lines(path, ReadLimits(max_expansion=10), refused.append))
    budget = size * 10 + (1 << 20)
    assert count == budget // len(LINE)
    assert len(refused) == 1
    assert refused[0].line_no == count + 1
    assert "expands to more than" in refused[0].reason and "not read" in refused[0].reason


def test_parse_file_yields_the_refused_lines_as_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(LINE + "x" * 1000 + "\n" + LINE)
    out = list(parse_file(path, "squid", limits=ReadLimits(max_line=500)))
    assert [type(o) for o in out] == [Record, BadLine, Record]


def test_truncated_gzip_names_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "cut.log.gz"
    data = gzip.compress((LINE * 5000).encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"the gzip data is truncated or damaged after line \d+"):
        list(parse_file(path, "squid"))


@pytest.mark.parametrize("fmt", ["jsonl", "zeek"])
def test_deeply_nested_json_is_a_bad_line(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "nested.json"
    good = {"ts": 1700000000.5, "host": "a.test", "_path": "http", "id.orig_h": "10.0.0.1"}
    path.write_text(json.dumps(good) + "\n" + '{"x": ' + "[" * 10_000 + "]" * 10_000 + "}" + "\n")
    mapping = "time=ts,host=host" if fmt == "jsonl" else None
    out = list(parse_file(path, fmt, mapping))
    assert isinstance(out[0], Record)
    assert isinstance(out[1], BadLine) and out[1].reason == "not JSON: nested too deeply"


def test_the_cli_upload_counts_what_it_refused(tmp_path: Path, db_url: str) -> None:
    good = (LOGS / "squid-access.log").read_text().splitlines(keepends=True)[:3]
    log = gzip_bomb(
        tmp_path / "bomb.log.gz", ("".join(good).encode(), 1), (b"A" * (1 << 20), 256),
        (b"\n", 1), (good[0].encode(), 1),
    )  # fmt: skip
    done = run(
        ["upload", "--format", "squid", "--json", str(log)],
        db_url,
        {"ENFORCER_DISCOVERY_MAX_LINE": "100000", "ENFORCER_DISCOVERY_MAX_EXPANSION": "100000"},
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["records"] == 4 and stats["badLines"] == 1
    assert stats["badLineSamples"][0]["line"] == 4
    assert stats["badLineSamples"][0]["reason"] == "line longer than 100000 bytes: not read"

    cut = tmp_path / "cut.log.gz"
    data = gzip.compress((LINE * 5000).encode())
    cut.write_bytes(data[: len(data) // 2])
    failed = run(["upload", "--format", "squid", str(cut)], db_url)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert f"{cut}:" in failed.stderr and "truncated or damaged" in failed.stderr
