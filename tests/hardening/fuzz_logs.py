"""atheris harness: a syslog datagram -> its payload -> every log format's parser (not in CI).

    .venv/bin/python tests/hardening/fuzz_logs.py -max_total_time=600

The first byte picks the format; the rest is a datagram as the syslog collector receives it,
whose payload lines are handed to that format's parser. Parsers may only yield Record or
BadLine (FormatError for a file-level problem such as a missing Zeek header).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from enforcer.discovery.formats import parser_for
    from enforcer.discovery.records import BadLine, FormatError, Record
    from enforcer.discovery.syslog import parse_syslog, split_frames

PARSERS = [
    parser_for("squid"),
    parser_for("zeek"),
    parser_for("w3c"),
    parser_for("panos"),
    parser_for("zscaler-nss"),
    parser_for("csv", "time=t,host=h,src_ip=s,bytes_up=u,dest_port=p"),
    parser_for("jsonl", "time=t:epoch,url=u,src_ip=s.ip,dest_port=p"),
]


def one_input(data: bytes) -> None:
    if not data:
        return
    parse = PARSERS[data[0] % len(PARSERS)]
    frames, _rest = split_frames(data[1:])
    lines = [parse_syslog(frame).payload + "\n" for frame in frames] or [
        data[1:].decode("utf-8", "replace")
    ]
    try:
        for item in parse(lines):
            assert type(item) in (Record, BadLine), item
    except FormatError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
