"""Fuzz the device-facing endpoints over HTTP: any body or query -> 2xx/4xx, never 5xx.

Every enrolled device (and anyone holding a stolen token) can send `POST /api/v1/events` and
`GET /api/v1/sync` whatever it likes, and anyone at all can send `POST /api/v1/enroll`. A 5xx
there is at best a log full of tracebacks and at worst a poison batch a shim resends forever.
The server is real (uvicorn, `create_app`, a SQLite store) and shared by the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from enforcer.models import Action, Indicator
from tests.api.helpers import apply_indicators
from tests.hardening.apiserver import ADMIN, BACKENDS, SECRET, Api, serve_store
from tests.hardening.fuzzing import JSON, SCALARS, fuzz, mutations

pytestmark = pytest.mark.fuzz

EVENT = {
    "time": "2026-11-25T10:00:00Z", "hostname": "laptop-042.corp.example", "user": "alice",
    "localIp": "10.0.0.5", "domain": "megashare.example", "destIp": "203.0.113.7",
    "destPort": 443, "bytesUp": 1200, "bytesDown": 56000, "action": "blocked",
    "indicator": "megashare.example", "application": "megashare", "source": "dns",
}  # fmt: skip
ENROL = {"enrollSecret": SECRET, "deviceId": "laptop-042", "hostname": "h", "os": "Linux",
         "user": "alice", "localIps": ["10.0.0.5"], "groups": ["engineering"]}  # fmt: skip


class Device:
    """The module's server and one enrolled device's token (its batch ids are made unique)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.token = api.enroll("fuzz-device", ["engineering"])
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.batches = 0

    def post_events(self, body: bytes, content_type: str = "application/json") -> httpx.Response:
        return self.api.client.post(
            "/api/v1/events", content=body, headers=self.headers | {"Content-Type": content_type}
        )


@pytest.fixture(scope="module", params=BACKENDS)
def device(request: pytest.FixtureRequest) -> Iterator[Device]:
    with serve_store(request.param) as api:
        apply_indicators(
            api.engine,
            [
                Indicator("megashare.example", Action.BLOCK, app_id="megashare"),
                Indicator("chatbot.example", Action.AUDIT, scope="engineering"),
            ],
        )
        yield Device(api)


def _no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == response.status_code and problem["detail"]


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@fuzz(100)
@given(body=JSON)
@example(body={"batchId": "b", "events": [dict(EVENT, time="0001-01-01T00:00:00+05:00")]})
@example(body={"batchId": "b", "events": [dict(EVENT, time="9999-12-31T23:59:59-05:00")]})
@example(body={"batchId": "\x00", "events": [dict(EVENT, user="\x00")]})
@example(body={"batchId": "b\ud800", "events": [dict(EVENT, domain="\ud800")]})
def test_events_arbitrary_json(device: Device, body: Any) -> None:
    _no_server_error(device.post_events(_dumps(body)))


@fuzz(100)
@given(body=mutations({"batchId": "batch-1", "deviceId": "fuzz-device", "events": [EVENT]}))
def test_events_mutated_batch(device: Device, body: Any) -> None:
    if isinstance(body, dict) and isinstance(body.get("batchId"), str):
        device.batches += 1  # a fresh id, so the batch reaches the store instead of `duplicate`
        body["batchId"] = f"{body['batchId'][:40]}-{device.batches}"
    response = device.post_events(_dumps(body))
    _no_server_error(response)
    if response.status_code == 200:
        assert response.json()["count"] == len(body["events"])


@fuzz(60)
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))  # fmt: skip
@example(raw=b"\xff\xfe{", content_type="application/json")
@example(raw=b"[" * 5000, content_type="application/json")
def test_events_arbitrary_bytes(device: Device, raw: bytes, content_type: str) -> None:
    _no_server_error(device.post_events(raw, content_type))


QUERY_VALUE = st.text(max_size=12) | st.sampled_from(
    ["0", "1", "2", "-1", "1e3", "nan", "inf", "60", "61", "0.0001", "99999999999999999999999"]
)


@fuzz(100)
@given(
    params=st.dictionaries(st.sampled_from(["since", "wait", "x"]), QUERY_VALUE, max_size=3),
    if_none_match=st.none() | st.text(max_size=30) | st.just('"1-000000000000"'),
)
def test_sync_arbitrary_query(
    device: Device, params: dict[str, str], if_none_match: str | None
) -> None:
    headers = dict(device.headers)
    if if_none_match is not None and if_none_match.isprintable() and if_none_match.isascii():
        headers["If-None-Match"] = if_none_match
    response = device.api.client.get("/api/v1/sync", params=params, headers=headers)
    _no_server_error(response)
    if response.status_code == 200:
        body = response.json()
        assert isinstance(body["revision"], int) and isinstance(body["upserts"], list)


@fuzz(100)
@given(body=mutations(ENROL) | JSON)
def test_enrol_arbitrary_json(device: Device, body: Any) -> None:
    response = device.api.client.post("/api/v1/enroll", content=_dumps(body),
                                      headers={"Content-Type": "application/json"})  # fmt: skip
    _no_server_error(response)
    assert response.status_code in (201, 401, 403, 413, 422, 429)


@fuzz(100)
@given(token=st.text(max_size=80) | SCALARS.map(str))
def test_arbitrary_bearer_tokens(device: Device, token: str) -> None:
    """Whatever the Authorization header holds: 401 (or 403 for the admin token), never 5xx."""
    header = f"Bearer {token}"
    if not header.isascii() or not header.isprintable() or header != header.strip():
        return  # httpx refuses to send such a header; the server never sees it
    response = device.api.client.get("/api/v1/sync", headers={"Authorization": header})
    _no_server_error(response)
    assert response.status_code in (401, 403) or token.strip() in (device.token, ADMIN)
