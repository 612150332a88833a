"""The Defender sink against a local server built to the Indicators API's documented contract."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.config import Settings
from enforcer.errors import TemporaryError
from enforcer.models import Action, Indicator, Severity
from enforcer.sinks import defender
from enforcer.sinks.base import SinkError, SinkResult

from .defender_fake import CLIENT_ID, CLIENT_SECRET, FakeDefender, Tenant
from .helpers import ind, settings

IMPORT, DELETE, LIST = "/api/indicators/import", "/api/indicators/BatchDelete", "/api/indicators"


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(page_size=500)


@pytest.fixture
def server(tenant: Tenant) -> Iterator[FakeDefender]:
    fake = FakeDefender(tenant)
    yield fake
    fake.stop()


@pytest.fixture
def cfg(server: FakeDefender, tmp_path: Path) -> Settings:
    return settings(
        defender_state_dir=tmp_path / "state",
        defender_tenant_url=server.url,
        defender_token_url=f"{server.url}/oauth2/v2.0/token",
        defender_client_id=CLIENT_ID,
        defender_client_secret=CLIENT_SECRET,
        defender_calls_per_minute=10_000,
        defender_max_retry_after=5,
    )


def sync(desired: list[Indicator], cfg: Settings, revision: int = 1) -> SinkResult:
    return defender.apply(defender.plan(desired, revision, cfg), cfg)


def test_only_our_indicators_are_created_updated_and_deleted(tenant: Tenant, cfg: Settings) -> None:
    soc = tenant.add("soc.example")  # someone else's: never touched
    clash = tenant.add("clash.example", action="Allowed")  # someone else's, and we want it blocked
    tenant.add("gone.example", description="old (Managed by Enforcer)")
    tenant.add("changed.example", description="Managed by Enforcer", severity="Low")
    desired = [
        ind("new.example"),
        ind("changed.example", description="Managed by Enforcer"),
        ind("clash.example"),
        ind("warned.example", Action.WARN),
        ind("alerted.example", Action.ALERT),
        ind("group.example", scope="engineering"),  # device-group scope: not for the tenant
    ]
    plan = defender.plan(desired, 3, cfg)
    assert [(c.action.value, c.name) for c in plan.changes] == [
        ("+", "alerted.example"),
        ("~", "changed.example"),
        ("-", "gone.example"),
        ("+", "new.example"),
        ("+", "warned.example"),
    ]
    assert plan.skipped == (
        ("clash.example", f"held by indicator {clash['id']} that Enforcer does not own"),
    )

    result = defender.apply(plan, cfg)
    assert (result.created, result.updated, result.deleted, result.ok) == (3, 1, 1, True)
    assert tenant.indicators[soc["id"]] == soc and tenant.by_value("clash.example") == clash
    assert tenant.by_value("gone.example") is None
    assert tenant.by_value("changed.example")["severity"] == Severity.HIGH.value  # type: ignore[index]
    warned = tenant.by_value("warned.example")
    assert warned is not None and warned["action"] == "Warn"
    assert "Managed by Enforcer" in warned["description"]
    alerted = tenant.by_value("alerted.example")
    assert alerted is not None and (alerted["action"], alerted["generateAlert"]) == ("Audit", True)

    again = defender.plan(desired, 3, cfg)
    assert again.changes == () and not again.has_changes


def test_batches_of_500_and_paged_reads(tenant: Tenant, cfg: Settings) -> None:
    desired = [ind(f"n{i}.example") for i in range(1_200)]
    sync(desired, cfg)
    assert tenant.calls_to(IMPORT) == [500, 500, 200]

    tenant.calls.clear()
    result = sync(desired[:50], cfg, 2)
    assert tenant.calls_to(LIST) == [500, 500, 200]  # three pages, by @odata.nextLink
    assert tenant.calls_to(DELETE) == [500, 500, 150]
    assert result.deleted == 1_150 and len(tenant.indicators) == 50


def test_429_waits_for_retry_after_then_goes_on(tenant: Tenant, cfg: Settings) -> None:
    tenant.throttle = {2: "1"}  # the first import call
    started = time.monotonic()
    result = sync([ind("a.example"), ind("b.example")], cfg)
    assert time.monotonic() - started >= 1.0
    assert result.created == 2 and tenant.by_value("b.example") is not None
    assert tenant.calls_to(IMPORT) == [2]


def test_a_retry_after_beyond_the_bound_fails_as_temporary(tenant: Tenant, cfg: Settings) -> None:
    tenant.throttle = {1: "600"}
    started = time.monotonic()
    with pytest.raises(TemporaryError, match=r"429.*retry after 600 s"):
        defender.plan([ind("a.example")], 1, cfg)
    assert time.monotonic() - started < 5


def test_an_expired_token_is_refreshed_once(tenant: Tenant, cfg: Settings) -> None:
    tenant.expire_token_at = {1}
    result = sync([ind("a.example")], cfg)
    assert result.created == 1
    assert tenant.issued == 3  # plan: the first token and its refresh; apply: one more


def test_a_400_reports_the_error_body(tenant: Tenant, cfg: Settings) -> None:
    plan = defender.plan([ind("a.example")], 1, cfg)
    tenant.bad_request_at = {tenant.seen + 1}
    with pytest.raises(SinkError, match="HTTP 400: InvalidRequestBody: Request body is incorrect"):
        defender.apply(plan, cfg)


def test_bad_client_credentials_are_reported(cfg: Settings) -> None:
    wrong = cfg.model_copy(update={"defender_client_secret": None})
    with pytest.raises(SinkError, match="AADSTS7000215: Invalid secret"):
        defender.plan([], 1, wrong)


def test_indicators_the_tenant_refuses_are_listed(tenant: Tenant, cfg: Settings) -> None:
    result = sync([ind("a.example"), ind("refused.example")], cfg)
    assert result.failed == (
        ("refused.example", "Indicator value is on the tenant's exclusion list"),
    )
    assert not result.ok and tenant.by_value("a.example") is not None


def test_beyond_the_tenant_limit_the_rest_is_reported_not_refused(
    tenant: Tenant, cfg: Settings
) -> None:
    for i in range(10):
        tenant.add(f"soc{i}.example")
    desired = [ind(f"n{i:05}.example") for i in range(14_991)]
    plan = defender.plan(desired, 1, cfg)
    assert plan.entries == 14_990 and len(plan.changes) == 14_990
    assert plan.overflow == (
        (
            "n14990.example",
            "does not fit the tenant's limit of 15,000 indicators: rank 14,991, "
            "0 requests in 30 days, risk 0.0",
        ),
    )
    assert plan.notes[0] == (
        "The tenant holds at most 15,000 indicators; 10 are not Enforcer's, which leaves room "
        "for 14,990 of the 14,991 wanted."
    )
    assert defender.apply(plan, cfg).created == 14_990
    assert len(tenant.indicators) == 15_000
