"""Regression tests for the bugs the hardening suite found, one per fix (see docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.errors import PolicySetError
from enforcer.plan.planfile import PLAN_FORMAT, plan_from_dict
from enforcer.policy.loader import load_policy_files
from enforcer.store.queries import device_usage
from enforcer.store.rollups import MAX_COUNTER, merge_rollup
from tests.api.conftest import bearer, enroll_body
from tests.conftest import PG_URL
from tests.hardening.apiserver import serve_store

T = 1763625600.0
INF = float("inf")


def test_huge_byte_counts_saturate_instead_of_failing_the_merge(
    engine: Engine, catalog: Catalog
) -> None:
    """Found by test_fuzz_discovery: two records of 2**63-1 bytes overflowed the store's BIGINT."""
    big = Record(T, "www.boxy.example", "10.0.0.1", device="pc-1", bytes_up=(1 << 63) - 1)
    for _ in range(2):  # the second merge adds to the stored row
        aggregator = Aggregator(Attributor(catalog))
        aggregator.add_all([big, big])
        merge_rollup(engine, aggregator.rollup())
    day = int(T // 86400)
    with engine.connect() as conn:
        (row,) = device_usage(conn, day - 400, day)
    assert row["bytes_up"] == MAX_COUNTER and row["transactions"] == 4


@pytest.mark.parametrize("data", [[], "plan", {"format": PLAN_FORMAT, "base_revision": INF}])
def test_a_malformed_plan_file_is_a_value_error(data: object) -> None:
    """Found by test_fuzz_plan: a JSON list (AttributeError) or Infinity (OverflowError) escaped
    the loader, and `enforcer apply PLANFILE` showed a traceback instead of what is wrong."""
    with pytest.raises(ValueError, match="malformed plan file"):
        plan_from_dict(data)  # type: ignore[arg-type]


EVENT = {
    "time": "2026-11-25T10:00:00Z",
    "domain": "a.example",
    "action": "blocked",
    "source": "dns",
}


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_an_event_time_out_of_range_in_utc_is_a_422(time: str) -> None:
    """Found by test_fuzz_api: converting such a time to UTC raised OverflowError, a 500 that
    a shim would resend forever."""
    with serve_store("sqlite") as api:
        token = api.enroll("d1")
        body = {"batchId": "b1", "events": [dict(EVENT, time=time)]}
        response = api.client.post("/api/v1/events", json=body, headers=bearer(token))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "body.events[0].time"


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL refuses NUL in text; SQLite stores it")
def test_a_nul_character_postgresql_cannot_store_is_a_422() -> None:
    """Found by test_fuzz_api on PostgreSQL: NUL in any text field (a hostname at enrolment, a
    batch id, an event's domain) raised DataError, a 500 (and a batch resent forever)."""
    with serve_store("postgresql") as api:
        token = api.enroll("d1")
        enrol = api.client.post("/api/v1/enroll", json=dict(enroll_body("d2"), hostname="a\x00"))
        batch = {"batchId": "b\x00", "events": [dict(EVENT, domain="a\x00.example")]}
        events = api.client.post("/api/v1/events", json=batch, headers=bearer(token))
        after = api.client.post("/api/v1/events", json={"batchId": "ok", "events": [EVENT]},
                                headers=bearer(token))  # fmt: skip
    assert (enrol.status_code, events.status_code) == (422, 422), (enrol.text, events.text)
    assert "\x00" not in events.text
    assert after.status_code == 200, after.text


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/indicators?skip={10**25}",
        f"/api/v1/indicators/{10**25}",
        f"/api/v1/devices?skip={10**25}",
        f"/api/v1/discovery/alerts/{10**25}/acknowledge",
        f"/api/v1/indicators/{-(10**20)}",  # found by the long contract run
        f"/api/v1/discovery/alerts/{-(10**20)}/acknowledge",
    ],
)
def test_an_integer_beyond_64_bits_is_a_422(path: str) -> None:
    """Found by test_contract: SQLite's driver raised OverflowError on such a parameter, a 500."""
    with serve_store("sqlite") as api:
        method = "POST" if path.endswith("acknowledge") else "GET"
        response = api.client.request(method, path, headers=api.admin)
    assert response.status_code == 422, response.text


def test_the_openapi_document_names_the_problem_answers() -> None:
    """Found by test_contract: /openapi.json listed only FastAPI's 422 (as application/json, in
    another shape) and no 401/403/429/503, and documented /metrics as JSON."""
    with serve_store("sqlite") as api:
        document = api.client.get("/openapi.json").json()
    sync = document["paths"]["/api/v1/sync"]["get"]["responses"]
    for status in ("401", "403", "422", "429", "503"):
        assert "application/problem+json" in sync[status]["content"], status
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=1.0.0; charset=utf-8"]


def test_a_tagged_flow_sequence_in_a_policy_is_a_policy_error(tmp_path: Path) -> None:
    """Found while reviewing the loader for docs/security.md: ruamel keeps no position for the
    items of a tagged flow sequence, and `line_of` raised TypeError instead of the policy error."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "a.yaml").write_text('apps: !!python/object/apply:os.system ["echo pwned"]\n')
    with pytest.raises(PolicySetError) as info:
        load_policy_files(directory)
    (err,) = info.value.errors
    assert (err.location.file, err.location.line, err.field) == ("policies/a.yaml", 1, "apps[0]")


@pytest.mark.parametrize("text", ["!!int", "!!set", "? - [a, b]\n", "!!int\n---]>"])
def test_yaml_the_library_cannot_construct_is_a_policy_error(tmp_path: Path, text: str) -> None:
    """Found by test_fuzz_policy.py::test_yaml_fragments: ruamel raised IndexError,
    AttributeError, TypeError or ValueError on these, which escaped the loader as a traceback
    instead of a policy error naming the file."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "a.yaml").write_text(text)
    with pytest.raises(PolicySetError) as info:
        load_policy_files(directory)
    assert [e.location.file for e in info.value.errors] == ["policies/a.yaml"]
