"""Enrolment and the auth matrix: every route refuses a missing, unknown or wrong-kind token."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from enforcer.api import ApiLimits, ServerConfigError, check_server_settings, create_app
from enforcer.api.ratelimit import RateLimiter
from enforcer.config import Settings
from tests.api.conftest import ADMIN, Api, bearer, enroll_body, running, settings

PROBLEM_KEYS = {"type", "title", "status", "detail"}

DEVICE_ROUTES = [
    ("GET", "/api/v1/sync", None),
    (
        "POST",
        "/api/v1/events",
        {
            "batchId": "b1",
            "events": [
                {
                    "time": "2026-11-25T10:00:00Z",
                    "domain": "a.example",
                    "action": "allowed",
                    "source": "dns",
                }
            ],
        },
    ),
]
ADMIN_ROUTES = [
    ("GET", "/api/v1/indicators", None),
    ("GET", "/api/v1/indicators/1", None),
    ("POST", "/api/v1/indicators", {"indicatorValue": "new.example", "action": "Block"}),
    ("DELETE", "/api/v1/indicators/1", None),
    ("GET", "/api/v1/devices", None),
]


def test_enroll_returns_a_token_and_wrong_secret_is_refused(api: Api) -> None:
    response = api.client.post("/api/v1/enroll", json=enroll_body("laptop-1", ["eng"]))
    assert response.status_code == 201
    body = response.json()
    assert body["deviceId"] == "laptop-1" and body["groups"] == ["eng"]
    assert len(body["deviceToken"]) >= 40

    wrong = api.client.post("/api/v1/enroll", json=enroll_body("laptop-2", secret="x" * 20))
    assert wrong.status_code == 401
    assert set(wrong.json()) == PROBLEM_KEYS
    assert "deviceToken" not in wrong.text


def test_admins_list_devices_without_tokens(api: Api) -> None:
    token = api.enroll("laptop-1", ["eng", "all-staff"])
    api.enroll("laptop-2")
    response = api.client.get("/api/v1/devices", headers=api.admin, params={"top": 1})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and len(body["value"]) == 1
    device = body["value"][0]
    assert device["deviceId"] == "laptop-1" and device["groups"] == ["all-staff", "eng"]
    assert device["hostname"] == "laptop-1.corp.example" and device["localIps"] == ["10.0.0.5"]
    assert set(device) == {
        "deviceId", "hostname", "os", "osVersion", "agentVersion", "user", "localIps", "groups",
        "requestedGroups", "assignedGroups", "enrolledAt", "lastSeen", "identityUpdatedAt", "appliedRevision", "appliedAt",
        "timeToEnforce", "behindSince", "stale",
    }  # fmt: skip
    assert token not in response.text


def test_reenrolling_rotates_the_token(api: Api) -> None:
    old = api.enroll("laptop-1")
    assert api.client.get("/api/v1/sync", headers=bearer(old)).status_code == 200
    new = api.enroll("laptop-1")
    assert new != old
    assert api.client.get("/api/v1/sync", headers=bearer(old)).status_code == 401
    assert api.client.get("/api/v1/sync", headers=bearer(new)).status_code == 200


@pytest.mark.parametrize("device_id", ["", "has space", "a/b", "x" * 129])
def test_enroll_checks_the_device_id(api: Api, device_id: str) -> None:
    response = api.client.post("/api/v1/enroll", json=enroll_body(device_id))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body.deviceId")
    assert "enrol-secret" not in response.text  # the input is never echoed


class ManualClock:
    """A monotonic clock that moves only when the test says: the limiter cannot refill during
    a slow run, so the test does not depend on the machine's speed."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_enroll_is_rate_limited_per_client(engine: Engine, limits: ApiLimits) -> None:
    clock = ManualClock()
    app = create_app(settings(), engine, limits)
    app.state.ctx.enroll_limiter = RateLimiter(limits.enroll_per_minute, clock=clock)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        codes = [
            client.post("/api/v1/enroll", json=enroll_body(f"d{i}", secret="w" * 20)).status_code
            for i in range(21)
        ]
        assert codes[:20] == [401] * 20
        assert codes[20] == 429
        limited = client.post("/api/v1/enroll", json=enroll_body("d-ok"))
        assert limited.status_code == 429  # the right secret does not jump the queue
        assert limited.headers["Retry-After"] == "3"  # 20 a minute: one more every 3 s
        clock.now += 2.9
        assert client.post("/api/v1/enroll", json=enroll_body("d-ok")).status_code == 429
        clock.now += 0.2
        assert client.post("/api/v1/enroll", json=enroll_body("d-ok")).status_code == 201


def test_auth_matrix_never_returns_data(api: Api) -> None:
    device = api.enroll("laptop-1")
    for method, path, body in DEVICE_ROUTES + ADMIN_ROUTES:
        for headers, expected in (
            ({}, 401),
            (bearer("not-a-token"), 401),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ):
            response = api.client.request(method, path, json=body, headers=headers)
            assert response.status_code == expected, (method, path, headers)
            assert set(response.json()) == PROBLEM_KEYS
            assert response.headers["WWW-Authenticate"] == "Bearer"
    for method, path, body in DEVICE_ROUTES:
        response = api.client.request(method, path, json=body, headers=api.admin)
        assert response.status_code == 403, (method, path)
        assert set(response.json()) == PROBLEM_KEYS
    for method, path, body in ADMIN_ROUTES:
        response = api.client.request(method, path, json=body, headers=bearer(device))
        assert response.status_code == 403, (method, path)
        assert set(response.json()) == PROBLEM_KEYS


def test_health_probes_and_docs_need_no_token(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/enroll", "/api/v1/sync", "/api/v1/events", "/api/v1/indicators"} <= set(paths)


def test_unknown_route_is_a_problem(api: Api) -> None:
    response = api.client.get("/api/v1/nope", headers=api.admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.json()) == PROBLEM_KEYS


ADMIN_OK = "admin-token-for-the-check-0123456789"
ENROL = "enrol-secret-for-the-check-0123456789"


@pytest.mark.parametrize(
    ("admin", "secret", "message"),
    [
        (None, ENROL, "ENFORCER_ADMIN_TOKEN is not set"),
        (ADMIN_OK, None, "ENFORCER_ENROLL_SECRET is not set"),
        ("short", ENROL, "ENFORCER_ADMIN_TOKEN is too short (5 characters)"),
        (ADMIN_OK, "enrol-secret-01", "ENFORCER_ENROLL_SECRET is too short"),
        (ADMIN_OK, ADMIN_OK, "must differ"),
        ("a" * 40, ENROL, "ENFORCER_ADMIN_TOKEN repeats too few characters"),
        (ADMIN_OK, "ab" * 20, "ENFORCER_ENROLL_SECRET repeats too few characters"),
        (ADMIN_OK, "password12345678", "ENFORCER_ENROLL_SECRET repeats too few characters"),
    ],
)
def test_the_server_refuses_unsafe_secrets(
    admin: str | None, secret: str | None, message: str, engine: Engine
) -> None:
    cfg = Settings(
        admin_token=SecretStr(admin) if admin else None,
        enroll_secret=SecretStr(secret) if secret else None,
    )
    with pytest.raises(ServerConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_server_settings(cfg)
    with pytest.raises(ServerConfigError):
        create_app(cfg, engine, ApiLimits())


def test_default_limits_are_the_documented_ones() -> None:
    limits = ApiLimits()
    assert limits.enroll_per_minute == 20
    assert limits.max_body_bytes == 4 * 1024 * 1024
    assert limits.max_events == 5_000
    assert 0.25 <= limits.poll_interval <= 0.5
    assert ADMIN not in repr(Settings(admin_token=SecretStr(ADMIN)))


def test_wrong_admin_tokens_from_one_address_are_rate_limited(engine: Engine) -> None:
    """Like the console's sign-in: after too many wrong tokens from an address, every admin
    request from it waits (a right token too, so a lucky guess is not told apart)."""
    import httpx

    from tests.api.conftest import running, settings

    limits = ApiLimits(bad_admin_tokens_per_minute=5, poll_interval=0.1)
    with (
        running(create_app(settings(), engine, limits)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        wrong = [
            client.get("/api/v1/devices", headers={"Authorization": f"Bearer guess-{i}"})
            for i in range(6)
        ]
        assert [r.status_code for r in wrong] == [401] * 5 + [429]
        assert int(wrong[-1].headers["Retry-After"]) >= 1
        right = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN}"})
        assert right.status_code == 429
