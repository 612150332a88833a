"""A real uvicorn server on a free port of 127.0.0.1, serving a fresh store (SQLite, PostgreSQL)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from enforcer.config import Settings

ADMIN = "admin-token-0123456789abcdef"
SECRET = "enrol-secret-0123456789abcdef"


@dataclass
class Api:
    """A running server and what tests need to talk to it."""

    url: str
    engine: Engine
    client: httpx.Client

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    def enroll(self, device_id: str, groups: list[str] | None = None) -> str:
        response = self.client.post("/api/v1/enroll", json=enroll_body(device_id, groups))
        assert response.status_code == 201, response.text
        token: str = response.json()["deviceToken"]
        return token


def enroll_body(
    device_id: str, groups: list[str] | None = None, secret: str = SECRET
) -> dict[str, Any]:
    return {
        "enrollSecret": secret,
        "deviceId": device_id,
        "hostname": f"{device_id}.corp.example",
        "os": "Linux",
        "user": "alice",
        "localIps": ["10.0.0.5"],
        "groups": groups or [],
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings() -> Settings:
    # These suites test scoping and sync, not who decides a device's groups: the devices'
    # requests are granted (lab mode). tests/api/test_groups.py tests the server's rules.
    # Their events carry fixed dates (years back): the server's time window is opened wide;
    # tests/api/test_event_floods.py tests the default window.
    return Settings(
        admin_token=SecretStr(ADMIN),
        enroll_secret=SecretStr(SECRET),
        trust_device_groups=True,
        max_event_skew=100 * 365 * 86_400,
    )


@pytest.fixture
def limits() -> ApiLimits:
    return ApiLimits(poll_interval=0.1)


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # As `enforcer serve` runs it: uvicorn does not read X-Forwarded-For (the API does, from
    # trusted proxies only: enforcer.api.deps.client_address).
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def api(engine: Engine, limits: ApiLimits) -> Iterator[Api]:
    with (
        running(create_app(settings(), engine, limits)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield Api(url, engine, client)
