"""Who decides a device's groups: the server (group secrets, the policy's hostname patterns,
an admin's assignment), never the device, whose request is only recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.api.app import ServerConfigError, check_server_settings
from enforcer.config import Settings
from tests.api.conftest import ADMIN, SECRET, Api, bearer, enroll_body, running
from tests.api.helpers import apply_indicators, block

ENG_SECRET = "eng-group-secret-0123456789abcdef"


@pytest.fixture
def strict(engine: Engine, tmp_path: Path) -> Iterator[Api]:
    """A server with the default rules: one group secret and a hostname pattern in policy."""
    import httpx

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "groups.yaml").write_text(
        "device_groups:\n"
        "  - name: finance\n    hostnames: ['FIN-*', 'ledger.corp.example']\n"
        "  - name: eng\n"
        "  - name: lenient\n"
    )
    settings = Settings(
        admin_token=SecretStr(ADMIN),
        enroll_secret=SecretStr(SECRET),
        group_secrets={"eng": SecretStr(ENG_SECRET)},
        policy_dir=policies,
    )
    with (
        running(create_app(settings, engine, ApiLimits(poll_interval=0.1))) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield Api(url, engine, client)


def _enrol(api: Api, device_id: str, groups: list[str], *, secret: str = SECRET,
           hostname: str = "") -> dict[str, object]:  # fmt: skip
    body = enroll_body(device_id, groups, secret)
    if hostname:
        body["hostname"] = hostname
    response = api.client.post("/api/v1/enroll", json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


def _listed(api: Api, device_id: str) -> dict[str, object]:
    body = api.client.get("/api/v1/devices", headers=api.admin, params={"q": device_id}).json()
    (device,) = [d for d in body["value"] if d["deviceId"] == device_id]
    found: dict[str, object] = device
    return found


def test_a_device_cannot_choose_its_group(strict: Api) -> None:
    apply_indicators(strict.engine, [block("a.example"), block("b.example", scope="lenient")])
    answer = _enrol(strict, "laptop-1", ["lenient", "eng"])
    assert answer["groups"] == []
    listed = _listed(strict, "laptop-1")
    assert listed["groups"] == [] and listed["requestedGroups"] == ["eng", "lenient"]
    token = str(answer["deviceToken"])
    synced = strict.client.get("/api/v1/sync", headers=bearer(token)).json()
    assert {u["indicatorValue"] for u in synced["upserts"]} == {"a.example"}


def test_a_group_secret_and_a_hostname_pattern_grant_groups(strict: Api) -> None:
    assert _enrol(strict, "dev-1", [], secret=ENG_SECRET)["groups"] == ["eng"]
    assert _enrol(strict, "fin-1", ["eng"], hostname="fin-laptop-7")["groups"] == ["finance"]
    both = _enrol(strict, "fin-2", [], secret=ENG_SECRET, hostname="Ledger.Corp.Example")
    assert both["groups"] == ["eng", "finance"]
    refused = strict.client.post(
        "/api/v1/enroll", json=enroll_body("x", [], "not-a-secret-of-this-server")
    )
    assert refused.status_code == 401


def test_an_admins_assignment_stands_over_re_enrolment(strict: Api) -> None:
    apply_indicators(strict.engine, [block("a.example"), block("b.example", scope="lenient")])
    first = _enrol(strict, "laptop-2", [])
    assigned = strict.client.put(
        "/api/v1/devices/laptop-2/groups", json={"groups": ["lenient"]}, headers=strict.admin
    )
    assert assigned.status_code == 204
    synced = strict.client.get("/api/v1/sync", headers=bearer(str(first["deviceToken"]))).json()
    assert "b.example" in {u["indicatorValue"] for u in synced["upserts"]}
    again = _enrol(strict, "laptop-2", ["eng"], secret=ENG_SECRET)
    assert again["groups"] == ["lenient"]
    listed = _listed(strict, "laptop-2")
    assert listed["assignedGroups"] == ["lenient"] and listed["requestedGroups"] == ["eng"]
    # Only an admin assigns, and only to a device that exists, with valid group names.
    device_token = str(again["deviceToken"])
    put = strict.client.put
    assert put("/api/v1/devices/laptop-2/groups", json={"groups": []},
               headers=bearer(device_token)).status_code in (401, 403)  # fmt: skip
    assert put("/api/v1/devices/nope/groups", json={"groups": []},
               headers=strict.admin).status_code == 404  # fmt: skip
    assert put("/api/v1/devices/laptop-2/groups", json={"groups": ["@bad"]},
               headers=strict.admin).status_code == 422  # fmt: skip


def test_group_secrets_are_checked_at_start() -> None:
    def check(secrets: dict[str, str]) -> None:
        check_server_settings(
            Settings(
                admin_token=SecretStr(ADMIN),
                enroll_secret=SecretStr(SECRET),
                group_secrets={k: SecretStr(v) for k, v in secrets.items()},
            )
        )

    check({"eng": ENG_SECRET})
    with pytest.raises(ServerConfigError, match="too short"):
        check({"eng": "short"})
    with pytest.raises(ServerConfigError, match="must differ"):
        check({"eng": SECRET})
    with pytest.raises(ServerConfigError, match="not a device group name"):
        check({"@all": ENG_SECRET})


@pytest.mark.parametrize("trusted", [True, False])
def test_enrolment_limits_follow_forwarded_addresses_from_trusted_proxies_only(
    engine: Engine, trusted: bool
) -> None:
    """Behind the TLS proxy the docs recommend, every device shares the proxy's address: a
    trusted proxy's X-Forwarded-For names the device; anyone else's header is ignored."""
    import httpx

    settings = Settings(
        admin_token=SecretStr(ADMIN), enroll_secret=SecretStr(SECRET), enroll_per_minute=2,
        trusted_proxies=["127.0.0.1/32"] if trusted else [],
    )  # fmt: skip
    with (
        running(create_app(settings, engine)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):

        def enrol(device: str, forwarded: str) -> int:
            response = client.post(
                "/api/v1/enroll", json=enroll_body(device, []),
                headers={"X-Forwarded-For": f"198.51.100.9, {forwarded}"},
            )  # fmt: skip
            return response.status_code

        first = [enrol(f"a{i}", "10.0.0.1") for i in range(3)]
        other = enrol("b0", "10.0.0.2")
    assert first == [201, 201, 429]
    assert other == (201 if trusted else 429), "the header counts only from a trusted proxy"
