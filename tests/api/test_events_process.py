"""Events of an intercepting shim name their process: uploaded, validated and stored."""

from __future__ import annotations

from enforcer.store.events import list_events
from tests.api.conftest import Api, bearer
from tests.api.test_events import URL, event


def test_the_process_fields_are_stored_with_the_event(api: Api) -> None:
    token = api.enroll("laptop-1")
    process = {"pid": 4242, "processName": "curl", "processPath": "/usr/bin/curl", "user": "nobody"}
    batch = {"batchId": "p-1", "events": [event(1, **process), event(2)]}
    assert api.client.post(URL, headers=bearer(token), json=batch).status_code == 200
    with api.engine.connect() as conn:
        rows = {row.domain: row for row in list_events(conn, device_id="laptop-1")}
    attributed, plain = rows["site1.example"], rows["site2.example"]
    assert (attributed.pid, attributed.process_name, attributed.process_path) == (
        4242,
        "curl",
        "/usr/bin/curl",
    )
    assert attributed.user == "nobody"
    assert (plain.pid, plain.process_name, plain.process_path) == (0, "", "")


def test_an_oversized_process_path_is_refused(api: Api) -> None:
    token = api.enroll("laptop-1")
    batch = {"batchId": "p-2", "events": [event(1, processPath="/" + "x" * 1024)]}
    answer = api.client.post(URL, headers=bearer(token), json=batch)
    assert answer.status_code == 422
    assert "processPath" in answer.text
