"""A store that cannot be reached: 503 problem details with Retry-After, never a 500 or a trace."""

from __future__ import annotations

import socket

import httpx

from enforcer.api import ApiLimits, create_app
from enforcer.store.db import make_engine
from tests.api.conftest import ADMIN, bearer, running, settings


def test_an_unreachable_store_is_503() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?connect_timeout=2")
    app = create_app(settings(), engine, ApiLimits(poll_interval=0.1))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        for path, token in (("/api/v1/indicators", ADMIN), ("/api/v1/sync", "some-device-token")):
            response = client.get(path, headers=bearer(token))
            assert response.status_code == 503, path
            assert response.headers["Retry-After"] == "5"
            assert response.json()["detail"] == "the store is unavailable; retry later"
            assert "Traceback" not in response.text and "psycopg" not in response.text
    engine.dispose()
