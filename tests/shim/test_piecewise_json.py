"""`loads_piecewise` gives what `json.loads` gives, and fails where it fails, naming the place."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from enforcer.shim.piecewise_json import iter_loads, loads_piecewise

SAME: list[str] = [
    '{"revision": 7, "snapshot": false, "upserts": [], "removes": []}',
    '{"revision":7,"upserts":[{"indicatorValue":"a.example","action":"Block"},{"x":[1,[2]]}]}',
    ' \n{ "a" : [ 1 , "two" , {"three": [3]} , null ] ,\t"b" : {"c": [1]} , "d": "x" }\r\n',
    "{}",
    "{ }",
    '{"a": []}',
    '{"a": [ ]}',
    '{"\\u00e9t\\u00e9": ["\\"quoted\\", comma", "]"]}',
    '{"dup": 1, "dup": [2]}',
    "[1, 2, 3]",
    '"a string"',
    "42",
]


@pytest.mark.parametrize("text", SAME)
def test_the_same_result_as_json_loads(text: str) -> None:
    assert loads_piecewise(text) == json.loads(text)


BAD = [
    "",
    "{",
    '{"a": [1, 2}',
    '{"a": [1 2]}',
    '{"a" 1}',
    '{"a": 1 "b": 2}',
    "{a: 1}",
    '{"a": [1,]}',
    '{"a": 1,}',
    '{"a": 1} trailing',
    '{"a": [1]}]',
    "<html>maintenance</html>",
]


@pytest.mark.parametrize("text", BAD)
def test_malformed_text_raises_a_decode_error_like_json_loads(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads_piecewise(text)


def test_a_large_sync_answer() -> None:
    body: dict[str, Any] = {
        "revision": 12,
        "snapshot": True,
        "upserts": [
            {"indicatorValue": f"n{i}.example", "action": "Block", "title": f"t{i}"}
            for i in range(20_000)
        ],
        "removes": [{"indicatorValue": f"r{i}.example", "scope": "g"} for i in range(500)],
    }
    assert loads_piecewise(json.dumps(body)) == body
    assert loads_piecewise(json.dumps(body, indent=2)) == body


def test_iter_loads_yields_once_per_element_of_the_top_level_arrays() -> None:
    parser = iter_loads('{"revision": 1, "upserts": [{"a": [1, 2]}, 2, 3], "removes": ["x"]}')
    steps = 0
    while True:
        try:
            next(parser)
        except StopIteration as done:
            assert done.value == {"revision": 1, "upserts": [{"a": [1, 2]}, 2, 3], "removes": ["x"]}
            break
        steps += 1
    assert steps == 4


def test_the_sync_client_takes_an_answer_that_is_not_the_apis_for_a_server_error() -> None:
    # A maintenance page answered with 200 is an outage to back off from, not a crash.
    from enforcer.shim.sync import ServerError, receive_update

    for body, message in (
        (b"<html>maintenance</html>", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"upserts": []}', "malformed"),
        (b'{"revision": 2, "upserts": ["a.example"]}', "malformed"),
        (b'{"revision": 2, "upserts": [{"action": "Block"}]}', "malformed"),
    ):
        with pytest.raises(ServerError, match=message):
            asyncio.run(receive_update(body))
    good = b'{"revision": 3, "upserts": [{"indicatorValue": "a.example", "action": "Block"}]}'
    update = asyncio.run(receive_update(good))
    assert update.revision == 3 and [i.value for i in update.upserts] == ["a.example"]
