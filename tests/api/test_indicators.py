"""The admin Indicators API: create, read, page, filter, delete, and the 409s."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.api.conftest import Api
from tests.api.helpers import apply_indicators, block

URL = "/api/v1/indicators"


def test_create_read_delete_a_manual_indicator(api: Api) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
    created = api.client.post(
        URL,
        headers=api.admin,
        json={
            "indicatorValue": "Paste.Example.",
            "indicatorType": "DomainName",
            "action": "Warn",
            "severity": "High",
            "title": "Paste sites",
            "description": "ticket 42",
            "expirationTime": expires.isoformat(),
            "generateAlert": True,
            "rbacGroupNames": ["eng"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["indicatorValue"] == "paste.example"
    assert body["action"] == "Warn" and body["severity"] == "High"
    assert body["rbacGroupNames"] == ["eng"] and body["generateAlert"] is True
    assert body["source"] == "manual" and body["createdBy"] == "admin"
    assert dt.datetime.fromisoformat(body["expirationTime"]) == expires
    assert body["creationTimeDateTimeUtc"].endswith("Z")

    got = api.client.get(f"{URL}/{body['id']}", headers=api.admin)
    assert got.status_code == 200 and got.json() == body

    dup = api.client.post(
        URL,
        headers=api.admin,
        json={"indicatorValue": "paste.example", "action": "Block", "rbacGroupNames": ["eng"]},
    )
    assert dup.status_code == 409 and "exists already" in dup.json()["detail"]

    assert api.client.delete(f"{URL}/{body['id']}", headers=api.admin).status_code == 204
    assert api.client.get(f"{URL}/{body['id']}", headers=api.admin).status_code == 404
    assert api.client.delete(f"{URL}/{body['id']}", headers=api.admin).status_code == 404


def test_policy_indicators_cannot_be_deleted(api: Api) -> None:
    apply_indicators(api.engine, [block("policy.example")])
    listed = api.client.get(URL, headers=api.admin, params={"source": "policy"}).json()
    ind_id = listed["value"][0]["id"]
    response = api.client.delete(f"{URL}/{ind_id}", headers=api.admin)
    assert response.status_code == 409
    assert "change the policy" in response.json()["detail"]
    assert api.client.get(f"{URL}/{ind_id}", headers=api.admin).status_code == 200


def test_paging_and_filters(api: Api) -> None:
    apply_indicators(
        api.engine,
        [block(f"site{i:02d}.example", app="bulk") for i in range(25)]
        + [block("eng-only.example", "eng")],
    )
    for value, action in (("warned.example", "Warn"), ("allowed.example", "Allowed")):
        payload = {"indicatorValue": value, "action": action}
        assert api.client.post(URL, headers=api.admin, json=payload).status_code == 201

    def get(**params: str | int) -> dict[str, Any]:
        response = api.client.get(URL, headers=api.admin, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = get(top=1000)
    assert everything["count"] == 28 and len(everything["value"]) == 28
    page = get(top=10, skip=20)
    assert page["count"] == 28
    assert [v["indicatorValue"] for v in page["value"]] == [
        v["indicatorValue"] for v in everything["value"][20:28]
    ][:10]
    assert get(source="manual")["count"] == 2
    assert get(source="policy")["count"] == 26
    assert get(action="Warn")["value"][0]["indicatorValue"] == "warned.example"
    assert get(app="bulk")["count"] == 25
    assert get(contains="site1")["count"] == 10
    assert [v["indicatorValue"] for v in get(scope="eng")["value"]] == ["eng-only.example"]
    assert get(scope="@all")["count"] == 27
    assert get(source="", action="", app="", contains="", scope="")["count"] == 28


def test_bad_requests_are_422_with_the_field(api: Api) -> None:
    cases = [
        (
            {"indicatorValue": "a.example", "action": "Block", "indicatorType": "IpAddress"},
            "body.indicatorType",
        ),
        ({"indicatorValue": "a.example", "action": "Destroy"}, "body.action"),
        ({"indicatorValue": "not a domain", "action": "Block"}, "body.indicatorValue"),
        ({"indicatorValue": "localhost", "action": "Block"}, "body.indicatorValue"),
        (
            {"indicatorValue": "a.example", "action": "Block", "rbacGroupNames": ["a", "b"]},
            "body.rbacGroupNames",
        ),
        (
            {
                "indicatorValue": "a.example",
                "action": "Block",
                "expirationTime": "2001-01-01T00:00:00Z",
            },
            "body.expirationTime",
        ),
        ({"action": "Block"}, "body.indicatorValue"),
    ]
    for payload, field in cases:
        response = api.client.post(URL, headers=api.admin, json=payload)
        assert response.status_code == 422, payload
        assert response.json()["detail"].startswith(field), response.json()
    for params in ({"top": 0}, {"skip": -1}, {"source": "other"}, {"action": "Nope"}):
        assert api.client.get(URL, headers=api.admin, params=params).status_code == 422, params
    assert api.client.get(f"{URL}/abc", headers=api.admin).status_code == 422
    bad_json = api.client.post(
        URL, headers={**api.admin, "Content-Type": "application/json"}, content=b"{nope"
    )
    assert bad_json.status_code == 422
