"""The Defender sink plans for the tenant's limits: 15,000 indicators, 100 calls a minute and
1,500 an hour; it collapses, ranks, reports what does not fit, and resumes an interrupted apply."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.config import Settings
from enforcer.models import Action, Indicator
from enforcer.sinks import defender
from enforcer.sinks.base import Ranking

from .defender_fake import CLIENT_ID, CLIENT_SECRET, FakeDefender, Tenant
from .helpers import ind, settings

IMPORT, LIST = "/api/indicators/import", "/api/indicators"


class FakeClock(defender.Clock):
    """Time that moves only when the sink sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.time = 1_800_000_000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds


# --- fit: pure ---------------------------------------------------------------------------------


def test_names_of_one_app_collapse_into_their_registrable_domain_only_when_needed() -> None:
    wanted = {
        i.value: i
        for i in (
            ind("a.files.example.co.uk", app_id="files"),
            ind("b.files.example.co.uk", app_id="files"),
            ind("c.files.example.co.uk", app_id="files"),
            ind("solo.example", app_id="solo"),
        )
    }
    assert defender.fit(wanted, 4).collapsed == ()  # room for all: nothing broadened
    fitted = defender.fit(wanted, 2, everything=wanted.values())
    assert fitted.collapsed == (
        (
            "example.co.uk",
            ("a.files.example.co.uk", "b.files.example.co.uk", "c.files.example.co.uk"),
        ),
    )
    assert sorted(i.value for i in fitted.chosen) == ["example.co.uk", "solo.example"]
    assert fitted.overflow == ()
    [domain] = [i for i in fitted.chosen if i.value == "example.co.uk"]
    assert (domain.app_id, domain.action) == ("files", Action.BLOCK)
    assert "Managed by Enforcer" in domain.description
    assert defender.fit(wanted, 2, everything=wanted.values(), collapse=False).collapsed == ()
    # The domain is another owner's indicator in the tenant: importing it would overwrite theirs.
    held = defender.fit(wanted, 2, everything=wanted.values(), held={"example.co.uk"})
    assert held.collapsed == () and len(held.overflow) == 2


@pytest.mark.parametrize(
    "other",
    [
        ind("c.shared.example", app_id="another-app"),  # another app under the domain
        ind("c.shared.example", Action.WARN, app_id="files"),  # another action
        ind("ok.shared.example", Action.ALLOWED, app_id=""),  # an exception under it
        ind("ok.shared.example", Action.ALLOWED, app_id="", scope="engineering"),  # a group's
    ],
)
def test_no_collapse_where_it_would_change_a_decision(other: Indicator) -> None:
    group = [ind("a.shared.example", app_id="files"), ind("b.shared.example", app_id="files")]
    wanted = {i.value: i for i in group}
    if not other.scope:
        wanted[other.value] = other
    fitted = defender.fit(wanted, 1, everything=[*group, other])
    assert fitted.collapsed == ()
    assert len(fitted.chosen) == 1 and len(fitted.overflow) == len(wanted) - 1


def test_ranking_keeps_exceptions_then_traffic_then_risk() -> None:
    wanted = {
        i.value: i
        for i in (
            ind("quiet-risky.example", app_id="quiet-risky"),
            ind("busy.example", app_id="busy"),
            ind("quiet-safe.example", app_id="quiet-safe"),
            ind("allowed.example", Action.ALLOWED, app_id=""),
            ind("manual.example", app_id=""),  # no app: traffic of its registrable domain
        )
    }
    ranking = Ranking(
        requests={"busy": 5, "manual.example": 7},
        risk={"quiet-risky": 8.5, "quiet-safe": 1.0, "busy": 0.5},
        days=14,
    )
    fitted = defender.fit(wanted, 3, ranking=ranking, limit_text=" a limit of 3")
    assert [i.value for i in fitted.chosen] == ["allowed.example", "manual.example", "busy.example"]
    assert fitted.overflow == (
        (
            "quiet-risky.example",
            "does not fit a limit of 3: rank 4, 0 requests in 14 days, risk 8.5",
        ),
        (
            "quiet-safe.example",
            "does not fit a limit of 3: rank 5, 0 requests in 14 days, risk 1.0",
        ),
    )


def test_the_budget_paces_per_minute_and_stops_at_the_hour(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = settings(
        defender_state_dir=tmp_path,
        defender_calls_per_minute=3,
        defender_calls_per_hour=7,
        defender_max_retry_after=120,
    )
    budget = defender.CallBudget(cfg, defender.State(cfg), clock)
    for _ in range(7):
        budget.take()
    assert clock.slept == [60.0, 60.0]  # calls 4 and 7 waited for their minute
    with pytest.raises(defender.BudgetExhausted, match=r"the 7 API calls of the last hour"):
        budget.take()
    # Another process (a new State read from the file) knows these calls.
    again = defender.CallBudget(cfg, defender.State(cfg), clock)
    with pytest.raises(defender.BudgetExhausted):
        again.take()
    clock.time += 3600
    again.take()
    defender.State(cfg).path.write_text("{not json")  # damaged: ignored, started afresh
    assert defender.State(cfg).calls == []


# --- 40,000 desired indicators against the contract fake -------------------------------------


def forty_thousand() -> tuple[list[Indicator], Ranking]:
    """40,000 desired indicators, shaped so that what fits is known without the sink's code."""
    desired: list[Indicator] = []
    requests: dict[str, int] = {}
    risk: dict[str, float] = {}
    for i in range(4_000):  # one app, five names under one domain: collapsible
        desired += [ind(f"s{j}.grp{i}.example", app_id=f"grp{i}") for j in range(5)]
        requests[f"grp{i}"] = 500
    for i in range(500):  # two apps under one domain: not collapsible
        desired += [
            ind(f"a.mix{i}.example", app_id=f"mixa{i}"),
            ind(f"b.mix{i}.example", app_id=f"mixb{i}"),
        ]
        requests[f"mixa{i}"] = requests[f"mixb{i}"] = 100
    for i in range(250):  # an allow exception under the domain: not collapsible
        desired += [
            ind(f"x.exc{i}.example", app_id=f"exc{i}"),
            ind(f"y.exc{i}.example", app_id=f"exc{i}"),
            ind(f"ok.exc{i}.example", Action.ALLOWED, app_id=""),
        ]
        requests[f"exc{i}"] = 100
    for i in range(250):  # a device group's exception under the domain: not collapsible
        desired += [
            ind(f"x.gx{i}.example", app_id=f"gx{i}"),
            ind(f"y.gx{i}.example", app_id=f"gx{i}"),
            ind(f"ok.gx{i}.example", Action.ALLOWED, app_id="", scope="engineering"),
        ]
        requests[f"gx{i}"] = 100
    for i in range(17_500):  # single names: 5,000 with traffic, the rest ranked by risk
        desired.append(ind(f"n{i}.example", app_id=f"n{i}"))
        if i < 5_000:
            requests[f"n{i}"] = 1 + i % 50
        risk[f"n{i}"] = 9.0 if i % 4 == 0 else 3.0
    assert len(desired) == 40_000
    return desired, Ranking(requests=requests, risk=risk)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tenant(clock: FakeClock) -> Tenant:
    return Tenant(page_size=500, clock=clock.now)


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
        defender_calls_per_minute=100,
        # An hour's budget ten times smaller than the API's 1,500 calls, with batches of 80: the
        # same story as 1,500 calls of 8 (one hour cannot send it all), in a tenth of the calls.
        defender_calls_per_hour=150,
        defender_batch_size=80,
        defender_max_retry_after=5,
    )


def most_in_any_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times)), default=0)


def ours(tenant: Tenant) -> set[str]:
    return {
        i["indicatorValue"]
        for i in tenant.indicators.values()
        if "Managed by Enforcer" in i["description"]
    }


def test_forty_thousand_desired_fit_the_limit_paced_and_resumed(
    tenant: Tenant, cfg: Settings, clock: FakeClock
) -> None:
    for i in range(10):
        tenant.add(f"soc{i}.example")
    desired, ranking = forty_thousand()

    plan = defender.plan(desired, 7, cfg, ranking=ranking, clock=clock)

    # What fits: 250 exceptions, 4,000 collapsed domains, 2,000 names with traffic 100, 5,000
    # singles with traffic, the 3,125 quiet singles of risk 9, then quiet risk-3 names by name.
    quiet_low = sorted(f"n{i}.example" for i in range(5_000, 17_500) if i % 4)
    kept_low, left_out = quiet_low[:615], quiet_low[615:]
    assert plan.entries == 14_990
    assert [name for name, _ in plan.overflow] == left_out
    assert len(left_out) == 8_760
    assert plan.overflow[0] == (
        left_out[0],
        "does not fit the tenant's limit of 15,000 indicators: rank 14,991, "
        "0 requests in 30 days, risk 3.0",
    )
    expected = (
        {f"ok.exc{i}.example" for i in range(250)}
        | {f"grp{i}.example" for i in range(4_000)}
        | {f"{p}.mix{i}.example" for i in range(500) for p in "ab"}
        | {f"{p}.{g}{i}.example" for i in range(250) for p in "xy" for g in ("exc", "gx")}
        | {f"n{i}.example" for i in range(17_500) if i < 5_000 or i % 4 == 0}
        | set(kept_low)
    )
    assert {c.name for c in plan.changes} == expected
    assert plan.notes == (
        "The tenant holds at most 15,000 indicators; 10 are not Enforcer's, which leaves room "
        "for 14,990 of the 39,750 wanted.",
        "20,000 names were collapsed into 4,000 registrable domains (same app and action, "
        "nothing else under them).",
        "8,760 indicators do not fit (ranked by requests in the last 30 days, then risk); each "
        "is listed with `!`.",
    )

    # One hour's 150 calls (one read, 149 imports of 80) cannot send 14,990 indicators: the
    # apply stops, the best ranked already in the tenant.
    with pytest.raises(defender.BudgetExhausted, match="the 150 API calls of the last hour"):
        defender.apply(plan, cfg, clock=clock)
    assert len(tenant.calls_to(IMPORT)) == 149
    first_part = ours(tenant)
    assert len(first_part) == 149 * 80
    assert {f"grp{i}.example" for i in range(4_000)} <= first_part
    assert {f"ok.exc{i}.example" for i in range(250)} <= first_part
    assert not set(kept_low) & first_part

    # An hour later the next run resumes where it stopped: no new read, no batch sent twice.
    clock.time += 3_600
    tenant.calls.clear()
    resumed = defender.plan(desired, 8, cfg, ranking=ranking, clock=clock)
    assert tenant.calls_to(LIST) == []
    assert len(resumed.changes) == 14_990 - len(first_part)
    assert resumed.notes[0].startswith("Resuming the apply interrupted at revision 7")
    assert len(resumed.overflow) == 8_760
    result = defender.apply(resumed, cfg, clock=clock)
    assert result.ok and result.created == 14_990 - len(first_part)
    assert len(tenant.calls_to(IMPORT)) == 188 - 149  # 188 batches of 80 in all
    assert ours(tenant) == expected and len(tenant.indicators) == 15_000

    # Within 100 calls in any minute and 150 in any hour, as the server saw them.
    assert most_in_any_window(tenant.times, 60) <= 100
    assert most_in_any_window(tenant.times, 3_600) <= 150

    # Finished: the next plan reads the tenant again and finds nothing to do.
    again = defender.plan(desired, 8, cfg, ranking=ranking, clock=clock)
    assert tenant.calls_to(LIST) == [500] * 30
    assert again.changes == () and len(again.overflow) == 8_760
