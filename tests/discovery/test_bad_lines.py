"""Lines that cannot be parsed are reported with their line number and reason, and never abort.

The property tests feed every parser arbitrary text: a parser may only ever yield `Record` or
`BadLine` (a `FormatError` is allowed where a whole file is unusable, as documented).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.discovery.formats import FORMATS, parser_for
from enforcer.discovery.records import BadLine, FormatError, Record

GOOD_SQUID = "1700000000.123 5 10.0.0.1 TCP_MISS/200 100 GET http://a.test/ - HIER_DIRECT/1.2.3.4 text/html\n"


def test_squid_bad_lines_are_counted_with_numbers_and_reasons():
    lines = [
        GOOD_SQUID,
        "garbage\n",
        "\n",
        "# a comment\n",
        "yesterday 5 10.0.0.1 TCP_MISS/200 100 GET http://a.test/ - HIER_DIRECT/1.2.3.4 -\n",
        "1700000000.123 5 10.0.0.1 TCP_MISS/200 many GET http://a.test/ - HIER_DIRECT/1.2.3.4 -\n",
        GOOD_SQUID,
    ]
    out = list(FORMATS["squid"](lines))
    assert [type(o).__name__ for o in out] == ["Record", "BadLine", "BadLine", "BadLine", "Record"]
    assert out[1] == BadLine(2, "expected 10 fields, got 1", "garbage")
    assert out[2].line_no == 5 and out[2].reason == "bad time 'yesterday'"  # type: ignore[union-attr]
    assert out[3].line_no == 6 and out[3].reason == "bad byte count 'many'"  # type: ignore[union-attr]


def test_bad_line_text_is_truncated():
    (bad,) = list(FORMATS["squid"](["x" * 1000 + "\n"]))
    assert isinstance(bad, BadLine) and len(bad.text) == 200


def test_zeek_tsv_bad_lines():
    lines = [
        "#separator \\x09",
        "#path\tconn",
        "#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\torig_bytes\tresp_bytes\tconn_state",
        "#types\ttime\taddr\tport\taddr\tport\tcount\tcount\tstring",
        "1700000000.0\t10.0.0.1\t1\t1.1.1.1\t443\t5\t6\tSF",
        "1700000000.0\t10.0.0.1\t1",
        "now\t10.0.0.1\t1\t1.1.1.1\t443\t5\t6\tSF",
        "1700000000.0\t10.0.0.1\t1\t1.1.1.1\thttps\t5\t6\tSF",
        "1700000000.0\t10.0.0.1\t1\t1.1.1.1\t443\t-\tlots\tSF",
        "{not json",
        "#close\t2024-01-01-00-00-00",
    ]
    out = list(FORMATS["zeek"](lines))
    assert isinstance(out[0], Record)
    assert [(o.line_no, o.reason) for o in out[1:] if isinstance(o, BadLine)][:4] == [
        (6, "expected 8 fields, got 3"),
        (7, "bad time 'now'"),
        (8, "bad port 'https'"),
        (9, "bad byte count 'lots'"),
    ]
    assert out[5].line_no == 10 and out[5].reason.startswith("not JSON")  # type: ignore[union-attr]
    assert len(out) == 6


def test_w3c_line_before_fields_directive():
    (bad,) = list(FORMATS["w3c"](["2024-01-01 00:00:00 10.0.0.1"]))
    assert bad == BadLine(
        1, "no #Fields: directive before this line", "2024-01-01 00:00:00 10.0.0.1"
    )


def test_jsonl_bad_lines():
    parse = parser_for("jsonl", "time=t,host=h,bytes_down=b")
    out = list(
        parse(
            [
                '{"t": 1700000000, "h": "a.test"}',
                "[1]",
                "{",
                '{"t": 1, "h": "a", "b": "x"}',
                '{"h": "a"}',
            ]
        )
    )
    assert isinstance(out[0], Record)
    assert [(o.line_no, o.reason.split(":")[0]) for o in out[1:]] == [  # type: ignore[union-attr]
        (2, "not a JSON object"),
        (3, "not JSON"),
        (4, "bad bytes_down 'x'"),
        (5, "bad time None"),
    ]


def test_csv_line_numbers_count_the_header_and_blank_lines():
    parse = parser_for("csv", "time=t,host=h")
    out = list(parse(["\n", "t,h\n", "1700000000,a.test\n", "\n", "x,b.test\n", "1,2,3\n"]))
    assert out[1:] == [
        BadLine(5, "bad time 'x'", "x,b.test"),
        BadLine(6, "expected 2 fields, got 3", "1,2,3"),
    ]


TEXT_LINES = st.lists(st.text(max_size=300).map(lambda s: s + "\n"), max_size=20)


PARSERS = {
    "squid": FORMATS["squid"],
    "zeek": FORMATS["zeek"],
    "w3c": FORMATS["w3c"],
    "panos": FORMATS["panos"],
    "zscaler-nss": FORMATS["zscaler-nss"],
    "csv": parser_for("csv", "time=t,host=h,bytes_up=u"),
    "jsonl": parser_for("jsonl", "time=t,url=u,dest_port=p"),
}
HEADERED = {"zeek", "csv"}
"""Formats whose header may make a whole file unusable (a documented FormatError)."""


def _only_records_or_bad_lines(parse, lines, *, fatal_allowed=False):
    try:
        for item in parse(lines):
            assert isinstance(item, Record | BadLine)
            if isinstance(item, Record):
                assert type(item.time) is float and 0 <= item.time < 1e11
                assert item.host == item.host.lower().strip(".")
    except FormatError:
        assert fatal_allowed


@pytest.mark.parametrize("name", list(PARSERS))
@settings(max_examples=150, deadline=None)
@given(lines=TEXT_LINES)
def test_every_parser_survives_arbitrary_text(name, lines):
    _only_records_or_bad_lines(PARSERS[name], lines, fatal_allowed=name in HEADERED)


def _squid_like(fields):
    return " ".join(fields) + "\n"


FIELD = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda s: not any(c.isspace() for c in s))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(FIELD, min_size=8, max_size=12).map(_squid_like), max_size=10))
def test_squid_survives_lines_of_the_right_shape(lines):
    _only_records_or_bad_lines(FORMATS["squid"], lines)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(FIELD, min_size=4, max_size=12).map(lambda f: "\t".join(f)), max_size=10))
def test_zeek_survives_tsv_of_the_right_shape(rows):
    header = [
        "#separator \\x09",
        "#path\thttp",
        "#fields\tts\tid.orig_h\tid.resp_h\tid.resp_p\thost\trequest_body_len\tresponse_body_len\tusername",
    ]
    _only_records_or_bad_lines(FORMATS["zeek"], header + rows, fatal_allowed=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(FIELD, min_size=30, max_size=40).map(lambda f: ",".join(f)), max_size=5))
def test_panos_survives_csv_of_the_right_shape(rows):
    _only_records_or_bad_lines(FORMATS["panos"], rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(FIELD, min_size=4, max_size=8).map(lambda f: " ".join(f)), max_size=8))
def test_w3c_survives_rows_of_the_right_shape(rows):
    _only_records_or_bad_lines(FORMATS["w3c"], ["#Fields: date time cs-host c-ip sc-bytes", *rows])
