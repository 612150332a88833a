"""Decompression and parser bombs through `POST /api/v1/discovery/upload` (real server, both back
ends): bounded memory, the refused part counted as bad lines, 4xx for a damaged gzip body."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

from tests.api.conftest import Api

LINE = (
    b"1700000000.123 5 10.0.0.1 TCP_MISS/200 100 CONNECT www.dropbox.com:443 - "
    b"HIER_DIRECT/1.2.3.4 -\n"
)


def test_a_gzip_bomb_of_one_huge_line_is_refused_in_bounded_memory(api: Api) -> None:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    body = z.compress(LINE * 3)
    for _ in range(512):  # one 512 MiB line: about 0.5 MB of gzip
        body += z.compress(b"A" * (1 << 20))
    body += z.compress(b"\n" + LINE) + z.flush()
    assert len(body) < 4 << 20
    tracemalloc.start()  # the server runs in this process (a thread)
    try:
        done = api.client.post(
            "/api/v1/discovery/upload?format=squid", content=body, headers=api.admin, timeout=120
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.status_code == 200, done.text
    stats = done.json()
    assert stats["records"] == 3
    reasons = [s["reason"] for s in stats["badLineSamples"]]
    assert reasons[0] == "line longer than 65536 bytes: not read"
    assert "expands to more than" in reasons[1] and "the rest was not read" in reasons[1]
    assert stats["badLines"] == 2
    assert peak < 64 << 20, f"{peak:,} bytes for the upload"


def test_truncated_gzip_is_a_422_naming_the_problem(api: Api) -> None:
    data = gzip.compress(LINE * 5000)
    cut = api.client.post(
        "/api/v1/discovery/upload?format=squid", content=data[: len(data) // 2], headers=api.admin
    )
    assert cut.status_code == 422, cut.text
    assert "the gzip data is truncated or damaged after line" in cut.json()["detail"]


def test_deeply_nested_json_is_a_bad_line_not_a_500(api: Api) -> None:
    good = {"ts": 1700000000, "host": "www.dropbox.com"}
    body = json.dumps(good) + "\n" + '{"x": ' + "[" * 10_000 + "]" * 10_000 + "}\n"
    done = api.client.post(
        "/api/v1/discovery/upload?format=jsonl&map=time%3Dts,host%3Dhost",
        content=body.encode(),
        headers=api.admin,
    )
    assert done.status_code == 200, done.text
    stats = done.json()
    assert stats["records"] == 1 and stats["badLines"] == 1
    assert stats["badLineSamples"][0]["reason"] == "not JSON: nested too deeply"


def test_an_upload_of_only_deeply_nested_json_is_a_422_naming_the_line(api: Api) -> None:
    """Nothing of it can be kept: a 4xx that names the line, not a 500 and not an empty 200."""
    body = '{"x": ' + "[" * 10_000 + "]" * 10_000 + "}\n"
    done = api.client.post(
        "/api/v1/discovery/upload?format=jsonl&map=time%3Dts,host%3Dhost",
        content=body.encode(),
        headers=api.admin,
    )
    assert done.status_code == 422, done.text
    assert done.json()["detail"] == "no line parsed as jsonl: line 1: not JSON: nested too deeply"
    assert api.client.get("/api/v1/discovery/reports", headers=api.admin).json() == []


def test_an_upload_in_the_wrong_format_is_a_422_suggesting_the_right_one(api: Api) -> None:
    done = api.client.post(
        "/api/v1/discovery/upload?format=panos", content=LINE * 3, headers=api.admin
    )
    assert done.status_code == 422, done.text
    assert done.json()["detail"].endswith("; the upload looks like squid (--format squid)")
