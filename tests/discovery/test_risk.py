"""Device risk: each signal, its points and its explanation."""

from __future__ import annotations

from enforcer.discovery.device_risk import DeviceAppDay, RiskLevel, device_risk

MB = 1024 * 1024
TODAY = 20_000


def baseline(app: str, up: int, days: int = 30) -> list[DeviceAppDay]:
    return [DeviceAppDay(TODAY - d, app, 10, up, 10 * up) for d in range(1, days + 1)]


def test_quiet_device_is_low() -> None:
    history = [*baseline("boxy", 2 * MB), DeviceAppDay(TODAY, "boxy", 10, 2 * MB, 20 * MB)]
    risk = device_risk(history, recent_from=TODAY, app_scores={"boxy": 1.0}, unsanctioned=set())
    assert risk.level is RiskLevel.LOW and risk.score == 0 and risk.reasons == ()


def test_upload_far_above_its_own_median_is_explained() -> None:
    history = [*baseline("mega", 4 * MB), DeviceAppDay(TODAY, "mega", 50, 56 * MB, MB)]
    risk = device_risk(history, recent_from=TODAY, app_scores={"mega": 3.0}, unsanctioned=set())
    assert risk.score == 3 and risk.level is RiskLevel.MEDIUM
    assert risk.reasons == ("upload 14x its 30-day median to mega: +3",)


def test_new_risky_app_unsanctioned_traffic_and_blocks_make_it_high() -> None:
    history = [
        *baseline("boxy", MB),
        DeviceAppDay(TODAY, "deepseek", 5, 1000, 1000),
        DeviceAppDay(TODAY, "pastey", 3, 10, 10),
    ]
    risk = device_risk(
        history, recent_from=TODAY, app_scores={"deepseek": 8.5, "pastey": 4.0},
        unsanctioned={"pastey"}, blocked_recent=25,
    )  # fmt: skip
    assert risk.level is RiskLevel.HIGH and risk.score == 3 + 2 + 2
    assert risk.reasons == (
        "new risky app deepseek (risk 8.5): +3",
        "traffic to unsanctioned pastey (3 requests): +2",
        "25 blocked attempts: +2",
    )


def test_a_risky_app_already_in_the_baseline_is_not_new() -> None:
    history = [*baseline("deepseek", 1000), DeviceAppDay(TODAY, "deepseek", 5, 1000, 1000)]
    risk = device_risk(history, recent_from=TODAY, app_scores={"deepseek": 8.5}, unsanctioned=set())
    assert risk.score == 0
