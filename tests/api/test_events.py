"""Event upload: idempotent batches, limits (413), malformed input (422), impersonation (403)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from enforcer.api import ApiLimits
from enforcer.store.events import count_events, list_events
from tests.api.conftest import Api, bearer

URL = "/api/v1/events"
MAX_BODY = 64 * 1024


@pytest.fixture
def limits() -> ApiLimits:
    return ApiLimits(max_body_bytes=MAX_BODY, max_events=50, poll_interval=0.1)


def event(i: int = 0, **extra: object) -> dict[str, Any]:
    return {
        "time": "2026-11-25T10:00:00+01:00",
        "hostname": "laptop-1.corp.example",
        "user": "alice",
        "localIp": "10.0.0.5",
        "domain": f"site{i}.example",
        "destIp": "203.0.113.7",
        "destPort": 443,
        "bytesUp": 1200,
        "bytesDown": 56000,
        "action": "blocked",
        "indicator": "site.example",
        "application": "megashare",
        "source": "proxy",
        **extra,
    }


def stored(api: Api, device_id: str | None = None) -> int:
    with api.engine.connect() as conn:
        return count_events(conn, device_id=device_id)


def test_a_batch_is_stored_once_however_often_it_is_sent(api: Api) -> None:
    token = api.enroll("laptop-1")
    batch = {"batchId": "b-0001", "deviceId": "laptop-1", "events": [event(i) for i in range(3)]}
    first = api.client.post(URL, headers=bearer(token), json=batch)
    assert first.status_code == 200
    assert first.json() == {"accepted": ["b-0001"], "duplicate": False, "count": 3, "refused": []}
    again = api.client.post(URL, headers=bearer(token), json=batch)
    assert again.json() == {"accepted": ["b-0001"], "duplicate": True, "count": 3, "refused": []}
    assert stored(api) == 3
    with api.engine.connect() as conn:
        newest = list_events(conn, device_id="laptop-1", limit=1)[0]
    assert newest.time.hour == 9 and newest.app_id == "megashare" and newest.bytes_down == 56000
    # Another device may use the same batch id: ids are per device.
    other = api.enroll("laptop-2")
    assert (
        api.client.post(URL, headers=bearer(other), json={**batch, "deviceId": None}).json()[
            "duplicate"
        ]
        is False
    )
    assert stored(api, "laptop-2") == 3


def test_posting_as_another_device_is_forbidden(api: Api) -> None:
    api.enroll("victim")
    token = api.enroll("laptop-1")
    batch = {"batchId": "b1", "deviceId": "victim", "events": [event()]}
    response = api.client.post(URL, headers=bearer(token), json=batch)
    assert response.status_code == 403
    assert stored(api) == 0


def test_too_many_events_is_413(api: Api) -> None:
    token = api.enroll("laptop-1")
    response = api.client.post(
        URL, headers=bearer(token), json={"batchId": "big", "events": [event()] * 51}
    )
    assert response.status_code == 413 and "at most 50" in response.json()["detail"]
    assert stored(api) == 0


def test_a_body_over_the_limit_is_413_by_length(api: Api) -> None:
    token = api.enroll("laptop-1")
    body = b'{"batchId":"x","events":[' + b" " * (MAX_BODY * 2) + b"]}"
    response = api.client.post(
        URL, headers={**bearer(token), "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_a_chunked_body_over_the_limit_is_413_while_reading(api: Api) -> None:
    token = api.enroll("laptop-1")

    def chunks() -> Iterator[bytes]:
        yield b'{"batchId":"x","events":['
        for _ in range(8):
            yield b" " * (MAX_BODY // 4)
        yield b"]}"

    response = api.client.post(
        URL, headers={**bearer(token), "Content-Type": "application/json"}, content=chunks()
    )
    assert response.status_code == 413
    assert stored(api) == 0


def test_a_raw_chunked_upload_is_cut_off(api: Api) -> None:
    """Without a client library in between: one oversized chunk, no Content-Length."""
    token = api.enroll("laptop-1")
    parts = urlsplit(api.url)
    body = b'{"batchId":"x","events":[' + b" " * (MAX_BODY * 2)
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: {parts.hostname}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time": "yesterday"}, "body.events[0].time"),
        ({"action": "exploded"}, "body.events[0].action"),
        ({"source": "smtp"}, "body.events[0].source"),
        ({"bytesUp": -1}, "body.events[0].bytesUp"),
        ({"destPort": 70000}, "body.events[0].destPort"),
        ({"domain": "x" * 300}, "body.events[0].domain"),
    ],
)
def test_malformed_events_are_422_with_the_path(
    api: Api, change: dict[str, Any], field: str
) -> None:
    token = api.enroll("laptop-1")
    response = api.client.post(
        URL, headers=bearer(token), json={"batchId": "b1", "events": [event(**change)]}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field)
    assert stored(api) == 0


def test_malformed_batches_are_422(api: Api) -> None:
    token = api.enroll("laptop-1")
    body: object
    for body in (
        {"events": []},
        {"batchId": "", "events": []},
        {"batchId": "x" * 65, "events": []},
        {"batchId": "b", "events": "nope"},
        [1, 2],
    ):
        response = api.client.post(URL, headers=bearer(token), json=body)
        assert response.status_code == 422, body
    garbage = api.client.post(
        URL, headers={**bearer(token), "Content-Type": "application/json"}, content=b"\xff\xfe{"
    )
    assert garbage.status_code == 400  # not even text: FastAPI's "error parsing the body"
    assert garbage.json()["status"] == 400
    empty = api.client.post(URL, headers=bearer(token), json={"batchId": "empty", "events": []})
    assert empty.json() == {"accepted": ["empty"], "duplicate": False, "count": 0, "refused": []}
