"""Reading log files: gzip by magic bytes, bad UTF-8, laziness, errors naming the file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from enforcer.discovery.reader import ReadLimits, open_lines, parse_file
from enforcer.discovery.records import BadLine, FormatError, Record

LINE = "1700000000.123 5 10.0.0.1 TCP_MISS/200 100 GET http://a.test/ - HIER_DIRECT/1.2.3.4 -\n"


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path):
    path = tmp_path / "access.log.1"  # rotated, no .gz suffix
    path.write_bytes(gzip.compress((LINE * 3).encode()))
    assert list(open_lines(path)) == [LINE] * 3


def test_plain_file_with_gz_name_is_read_as_text(tmp_path: Path):
    path = tmp_path / "access.log.gz"
    path.write_text(LINE)
    assert list(open_lines(path)) == [LINE]


def test_bad_utf8_is_replaced_and_crlf_kept_for_the_parser(tmp_path: Path):
    path = tmp_path / "x.log"
    path.write_bytes(b"caf\xe9\r\nsecond")
    assert list(open_lines(path)) == ["caf\ufffd\r\n", "second"]


def test_lines_are_streamed(tmp_path: Path):
    path = tmp_path / "big.log.gz"
    with gzip.open(path, "wt") as f:
        for _ in range(200_000):
            f.write(LINE)
    # One line repeated compresses far more than real logs: past the default expansion limit.
    lines = open_lines(path, ReadLimits(max_expansion=10_000))
    assert next(lines) == LINE  # the first line comes before the rest is decompressed
    assert sum(1 for _ in lines) == 199_999


def test_parse_file_counts_bad_lines_and_goes_on(tmp_path: Path):
    path = tmp_path / "access.log"
    path.write_text(LINE + "oops\n" + LINE)
    out = list(parse_file(path, "squid"))
    assert [type(o) for o in out] == [Record, BadLine, Record]


def test_format_errors_name_the_file(tmp_path: Path):
    path = tmp_path / "conn.log"
    path.write_text("1700000000.1\tC1\t10.0.0.1\n")
    with pytest.raises(
        FormatError, match=rf"^{path}:1: a Zeek log line before any #fields header$"
    ):
        list(parse_file(path, "zeek"))


def test_truncated_gzip_is_a_format_error_after_the_good_lines(tmp_path: Path):
    path = tmp_path / "cut.log.gz"
    data = gzip.compress((LINE * 5000).encode())
    path.write_bytes(data[: len(data) // 2])
    seen: list[object] = []
    with pytest.raises(FormatError, match="cannot read"):
        seen.extend(parse_file(path, "squid"))
    assert len(seen) > 100


def test_a_byte_order_mark_is_dropped(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbfts,host\n1700000000,a.test\n")
    assert list(parse_file(path, "csv", "time=ts,host=host")) == [
        Record(1700000000.0, "a.test", "")
    ]
