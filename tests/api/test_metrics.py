"""/metrics: Prometheus exposition, admin only, with store gauges and event counters."""

from __future__ import annotations

import datetime as dt

from prometheus_client.parser import text_string_to_metric_families

from enforcer.models import Action, Indicator
from enforcer.store.manual import add_manual
from tests.api.conftest import Api, bearer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_need_the_admin_token_and_count_what_happened(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 401
    device = api.enroll("pc-1")
    assert api.client.get("/metrics", headers=bearer(device)).status_code == 403
    add_manual(api.engine, Indicator("evil.example", Action.BLOCK), actor="t")
    before = samples(api.client.get("/metrics", headers=api.admin).text)
    event = {"time": dt.datetime.now(dt.UTC).isoformat(), "hostname": "pc-1", "user": "u", "localIp": "10.0.0.1",
             "domain": "a.example", "destIp": "", "destPort": 443, "bytesUp": 1, "bytesDown": 2,
             "action": "allowed", "indicator": "", "application": "", "source": "dns"}  # fmt: skip
    ok = api.client.post(
        "/api/v1/events", json={"batchId": "m1", "events": [event, event]}, headers=bearer(device)
    )
    assert ok.status_code == 200
    bad = api.client.post(
        "/api/v1/events", json={"batchId": "m2", "events": [{"time": "x"}]}, headers=bearer(device)
    )
    assert bad.status_code == 422
    after = samples(api.client.get("/metrics", headers=api.admin).text)
    assert after[("enforcer_indicators", (("action", "Block"), ("source", "manual")))] == 1
    assert after[("enforcer_store_revision", ())] == 1
    ingested = ("enforcer_events_ingested_total", ())
    assert after[ingested] - before.get(ingested, 0) == 2
    invalid = ("enforcer_events_rejected_total", (("reason", "invalid"),))
    assert after[invalid] - before.get(invalid, 0) == 1
    assert ("enforcer_sync_clients_waiting", ()) in after
