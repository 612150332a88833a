"""The wire shapes (`enforcer.wire`): one definition that the server, the shim and OpenAPI share.

The hot paths write and read the JSON by hand (plans, snapshots, event uploads); these tests hold
those fast paths to the pydantic models, and send real bodies from the server to the shim's
parser and from the shim's event builder to the server.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine

from enforcer.api import create_app
from enforcer.models import Action, EventAction, Indicator, NetworkEvent, Severity
from enforcer.shim.report.identity import DeviceIdentity
from enforcer.shim.report.reporter import event_body
from enforcer.shim.sync import parse_update
from enforcer.wire.enrolment import EnrollRequest
from enforcer.wire.events import WireEvent, event_json
from enforcer.wire.indicators import (
    SNAPSHOT_TAIL,
    DefenderIndicator,
    SyncBody,
    delta_body,
    from_defender,
    from_sync_entry,
    snapshot_head,
    sync_entry_json,
    to_defender,
)
from enforcer.wire.limits import APP_ID_MAX, DOMAIN_MAX, HOSTNAME_MAX
from tests.api.conftest import SECRET, Api, bearer, settings
from tests.api.helpers import apply_indicators

DEFENDER_FIELDS = {
    "indicatorValue",
    "indicatorType",
    "action",
    "severity",
    "title",
    "description",
    "expirationTime",
    "generateAlert",
    "rbacGroupNames",
    "application",
}

INDICATORS = [
    Indicator("a.example", Action.BLOCK),
    Indicator(
        "b.example",
        Action.WARN,
        Severity.HIGH,
        scope="engineering",
        title='Caf\u00e9 "share"',
        description="why",
        app_id="megashare",
        generate_alert=True,
        expiration=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    ),
    Indicator("c.example", Action.ALLOWED, Severity.INFORMATIONAL, title="Allowed by policy"),
]


def test_openapi_has_an_indicator_schema_with_the_defender_field_names(engine: Engine) -> None:
    schemas = create_app(settings(), engine).openapi()["components"]["schemas"]
    listed = schemas["IndicatorList"]["properties"]["value"]["items"]["$ref"]
    shown = schemas[listed.rsplit("/", 1)[1]]["properties"]
    assert shown.keys() >= DEFENDER_FIELDS and {"id", "source", "createdBy"} <= shown.keys()
    assert schemas["IndicatorCreate"]["properties"].keys() >= DEFENDER_FIELDS
    assert schemas["IndicatorCreate"]["properties"]["indicatorValue"]["maxLength"] == DOMAIN_MAX
    entry = schemas["SyncBody"]["properties"]["upserts"]["items"]["$ref"]
    assert entry.endswith("/SyncEntry") and "WireEvent" in schemas


@pytest.mark.parametrize("ind", INDICATORS, ids=lambda i: i.value)
def test_the_defender_fast_path_is_the_model(ind: Indicator) -> None:
    data = to_defender(ind)
    model = DefenderIndicator.model_validate(data)
    assert model.model_dump(mode="json") == data
    assert from_defender(data) == ind and model.to_indicator() == ind


@pytest.mark.parametrize("ind", INDICATORS, ids=lambda i: i.value)
def test_the_sync_entry_fast_path_is_the_model(ind: Indicator) -> None:
    text = sync_entry_json(
        ind.value, ind.scope, ind.action, ind.severity, ind.app_id, ind.generate_alert, ind.title
    )
    epoch = "0123456789abcdef0123456789abcdef.fedcba9876543210"
    snapshot = SyncBody.model_validate_json(snapshot_head(1, epoch) + text.encode() + SNAPSHOT_TAIL)
    delta = SyncBody.model_validate_json(delta_body(2, epoch, [text], []))
    assert (snapshot.epoch, snapshot.snapshot, delta.epoch, delta.snapshot) == (
        epoch,
        True,
        epoch,
        False,
    )
    entry = snapshot.upserts[0]
    assert delta.upserts == [entry]
    assert from_sync_entry(entry.model_dump()) == ind._replace(description="", expiration=None)


def test_what_the_server_sends_the_shim_reads(api: Api) -> None:
    rev = apply_indicators(api.engine, INDICATORS[:2])
    token = api.enroll("laptop-1", ["engineering"])
    snapshot = api.client.get("/api/v1/sync", headers=bearer(token))
    SyncBody.model_validate_json(snapshot.content)
    update = parse_update(snapshot.json())
    sent = {(i.scope, i.value): i for i in INDICATORS[:2]}
    assert update.snapshot and update.revision == rev
    assert {i.key: i for i in update.upserts} == {
        k: i._replace(description="", expiration=None) for k, i in sent.items()
    }

    rev2 = apply_indicators(api.engine, [INDICATORS[0], INDICATORS[2]])
    delta = api.client.get("/api/v1/sync", params={"since": rev}, headers=bearer(token))
    SyncBody.model_validate_json(delta.content)
    update = parse_update(delta.json())
    assert not update.snapshot and update.revision == rev2
    assert [i.value for i in update.upserts] == ["c.example"]
    assert update.removes == [("engineering", "b.example")]


def test_what_the_shim_uploads_the_server_accepts(api: Api) -> None:
    device = DeviceIdentity("laptop-1", "h" * 300, "Linux", "alice", ("10.0.0.5",), ())
    event = NetworkEvent(
        time=dt.datetime(2026, 11, 25, 10, 0),
        source="dns",
        domain="d" * 300,
        action=EventAction.BLOCKED,
        app_id="a" * 200,
    )
    body = event_body(event, device)
    assert body == event_json(event, hostname=device.hostname, user="alice", local_ip="10.0.0.5")
    parsed = WireEvent.model_validate(body)
    assert len(parsed.hostname) == HOSTNAME_MAX and len(parsed.domain) == DOMAIN_MAX
    assert len(parsed.application) == APP_ID_MAX and parsed.user == "alice"
    token = api.enroll("laptop-1")
    response = api.client.post(
        "/api/v1/events", json={"batchId": "b-1", "events": [body]}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": ["b-1"], "duplicate": False, "count": 1, "refused": []}


def test_what_the_shim_enrols_with_the_server_accepts(api: Api) -> None:
    device = DeviceIdentity(
        "laptop-2", "laptop-2.corp", "Linux 6.8", "bob", ("10.0.0.6",), ("eng",)
    )
    body = device.enrol_body(SECRET)
    request = EnrollRequest.model_validate(body)
    assert request.model_dump(by_alias=True) == body
    response = api.client.post("/api/v1/enroll", json=body)
    assert response.status_code == 201 and response.json()["groups"] == ["eng"]
