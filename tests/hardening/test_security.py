"""Security properties of the API that docs/security.md claims, checked (issue 7).

Tokens are compared in constant time and device tokens are stored hashed; enrolment is
rate-limited; request bodies are bounded before they are buffered. (That no secret reaches a
log is checked with real processes in test_outage_and_logs.py.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from enforcer.api import ApiLimits
from enforcer.api import deps as api_deps
from enforcer.api import groups as api_groups
from tests.api.conftest import ADMIN, SECRET, enroll_body
from tests.hardening.apiserver import serve_store


def test_device_tokens_are_stored_only_as_their_sha256() -> None:
    with serve_store("sqlite") as api:
        token = api.enroll("laptop-1")
        with api.engine.connect() as conn:
            rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM device"))]
    assert rows and not any(token in value for row in rows for value in row)
    assert any(hashlib.sha256(token.encode()).hexdigest() in row for row in rows)


def test_secrets_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin token and the enrolment secret go through hmac.compare_digest (constant time);
    a device token is looked up by its SHA-256, so its comparison leaks nothing about it."""
    compared: list[bytes] = []
    real = hmac.compare_digest  # both modules import the hmac module itself: patch it once

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(bytes(b))
        return real(a, b)

    assert api_deps.hmac is hmac and api_groups.hmac is hmac
    monkeypatch.setattr(hmac, "compare_digest", spy)
    with serve_store("sqlite") as api:
        api.client.get("/api/v1/devices", headers=api.admin)
        api.client.post("/api/v1/enroll", json=enroll_body("laptop-2"))
    assert ADMIN.encode() in compared and SECRET.encode() in compared


def test_enrolment_is_rate_limited_per_address_right_or_wrong_secret() -> None:
    with serve_store("sqlite", ApiLimits(enroll_per_minute=5, poll_interval=0.05)) as api:
        statuses = [
            api.client.post(
                "/api/v1/enroll", json=enroll_body(f"d{i}", secret="wrong" * 4)
            ).status_code
            for i in range(5)
        ]
        refused = api.client.post("/api/v1/enroll", json=enroll_body("d9"))
    assert statuses == [401] * 5
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


@pytest.fixture
def small_bodies() -> Iterator[tuple[str, dict[str, str]]]:
    with serve_store("sqlite", ApiLimits(max_body_bytes=10_000, poll_interval=0.05)) as api:
        token = api.enroll("laptop-3")
        yield api.url, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_an_oversized_body_is_refused_before_it_is_buffered(
    small_bodies: tuple[str, dict[str, str]],
) -> None:
    import httpx

    url, headers = small_bodies
    body = b'{"batchId": "b", "events": [' + b" " * 20_000 + b"]}"
    with httpx.Client(base_url=url, timeout=10) as client:
        declared = client.post("/api/v1/events", content=body, headers=headers)
        # Chunked (no Content-Length): the server stops reading past the limit and answers 413;
        # it may close the connection while the client is still sending, which is a refusal too.
        try:
            chunked = client.post(
                "/api/v1/events", content=(body[i : i + 1000] for i in range(0, len(body), 1000)),
                headers=headers,
            ).status_code  # fmt: skip
        except httpx.TransportError:
            chunked = 413
        healthy = client.get("/healthz").status_code
    assert (declared.status_code, chunked, healthy) == (413, 413, 200)
