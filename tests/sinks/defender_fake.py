"""A local stand-in for the Defender for Endpoint Indicators API, built to its documented contract.

Only what the sink uses, errors and throttling included:

* ``POST /oauth2/v2.0/token``: OAuth2 client credentials (form body) -> ``access_token``;
  a bad secret gets 401 ``{"error": "invalid_client", "error_description": ...}``;
* ``GET /api/indicators``: OData paging (``$skip``/``$top``, ``@odata.nextLink``);
* ``POST /api/indicators/import`` ``{"Indicators": [...]}`` (at most 500): create or update by
  value and type, with a per-indicator result ``{id, indicator, isFailed, failureReason}``; the
  tenant holds at most 15,000 indicators;
* ``DELETE /api/indicators/{id}`` (204 / 404) and ``POST /api/indicators/BatchDelete``
  ``{"IndicatorIds": [...]}`` (at most 500);
* every ``/api`` call needs a current bearer token (401 otherwise); a test can make the Nth call
  answer 429 with ``Retry-After``, 401 (the token expired), or 400 with an OData error body.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .helpers import free_port

ACTIONS = {"Warn", "Block", "Audit", "Alert", "AlertAndBlock", "BlockAndRemediate", "Allowed"}
SEVERITIES = {"Informational", "Low", "Medium", "High"}
TYPES = {
    "FileSha1",
    "FileSha256",
    "FileMd5",
    "CertificateThumbprint",
    "IpAddress",
    "DomainName",
    "Url",
}
CLIENT_ID, CLIENT_SECRET = "enforcer-test-client", "s3cret"


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


class Tenant:
    """The tenant's state and the test's knobs."""

    def __init__(
        self,
        page_size: int = 100,
        limit: int = 15_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.page_size = page_size
        self.limit = limit
        self.clock = clock
        self.indicators: dict[str, dict[str, Any]] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self.times: list[float] = []
        """The `clock` time of every /api request received (a test checks the rate limits)."""
        self._next_id = 1
        self.tokens: set[str] = set()
        self.issued = 0
        self.calls: list[tuple[str, str, int]] = []
        """(method, path, items in the body) of every /api call that reached a handler."""
        self.seen = 0
        """/api requests received, answered or not (the Nth call of the knobs below)."""
        self.throttle: dict[int, str] = {}
        """Call number -> Retry-After value of a 429 answer."""
        self.expire_token_at: set[int] = set()
        self.bad_request_at: set[int] = set()
        self.lock = threading.Lock()

    def add(self, value: str, **fields: Any) -> dict[str, Any]:
        """An indicator as if created in the portal (or by another tool)."""
        item = {
            "id": str(self._next_id),
            "indicatorValue": value,
            "indicatorType": "DomainName",
            "action": "Block",
            "severity": "Medium",
            "title": f"portal {value}",
            "description": "added by the SOC",
            "expirationTime": None,
            "generateAlert": False,
            "application": None,
            "createdBy": "soc@example.com",
            "creationTimeDateTimeUtc": dt.datetime.now(dt.UTC).isoformat(),
            **fields,
        }
        self._next_id += 1
        self.indicators[item["id"]] = item
        self._by_key[(item["indicatorValue"], item["indicatorType"])] = item["id"]
        return item

    def remove(self, indicator_id: str) -> dict[str, Any] | None:
        item = self.indicators.pop(indicator_id, None)
        if item is not None:
            self._by_key.pop((item["indicatorValue"], item["indicatorType"]), None)
        return item

    def by_value(self, value: str) -> dict[str, Any] | None:
        for item in self.indicators.values():
            if item["indicatorValue"] == value:
                return item
        return None

    def calls_to(self, path: str) -> list[int]:
        return [n for _, p, n in self.calls if p == path]

    def import_one(self, data: dict[str, Any]) -> dict[str, Any]:
        value = data.get("indicatorValue")
        problem = None
        if not value:
            problem = "indicatorValue is required"
        elif data.get("indicatorType") not in TYPES:
            problem = f"invalid indicatorType {data.get('indicatorType')!r}"
        elif data.get("action") not in ACTIONS:
            problem = f"invalid action {data.get('action')!r}"
        elif data.get("severity") not in SEVERITIES:
            problem = f"invalid severity {data.get('severity')!r}"
        elif not data.get("title") or not data.get("description"):
            problem = "title and description are required"
        elif "refused" in str(value):
            problem = "Indicator value is on the tenant's exclusion list"
        if problem:
            return {"id": None, "indicator": value, "isFailed": True, "failureReason": problem}
        found = self._by_key.get((str(value), data["indicatorType"]))
        current = self.indicators[found] if found is not None else None
        if current is None:
            if len(self.indicators) >= self.limit:
                reason = f"The tenant has reached its limit of {self.limit} indicators"
                return {"id": None, "indicator": value, "isFailed": True, "failureReason": reason}
            current = self.add(str(value), createdBy=CLIENT_ID)
        current.update({k: v for k, v in data.items() if k != "id"})
        return {"id": current["id"], "indicator": value, "isFailed": False, "failureReason": None}


def make_app(tenant: Tenant) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def api_gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        with tenant.lock:
            tenant.seen += 1
            n = tenant.seen
            tenant.times.append(tenant.clock())
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in tenant.tokens:
                return _error(401, "Unauthorized", "Invalid or missing bearer token")
            if n in tenant.expire_token_at:
                tenant.tokens.clear()
                return _error(401, "Unauthorized", "The access token has expired")
            if n in tenant.throttle:
                return _error(
                    429,
                    "TooManyRequests",
                    "Rate limit is exceeded",
                    **{"Retry-After": tenant.throttle[n]},
                )
            if n in tenant.bad_request_at:
                return _error(400, "InvalidRequestBody", "Request body is incorrect")
        return await call_next(request)

    @app.post("/oauth2/v2.0/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid secret"},
                401,
            )
        with tenant.lock:
            tenant.issued += 1
            value = f"token-{tenant.issued}"
            tenant.tokens.add(value)
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "access_token": value})

    @app.get("/api/indicators")
    async def list_indicators(request: Request) -> Response:
        skip = int(request.query_params.get("$skip", 0))
        top = min(int(request.query_params.get("$top", tenant.page_size)), tenant.page_size)
        with tenant.lock:
            items = sorted(tenant.indicators.values(), key=lambda i: int(i["id"]))
            page = items[skip : skip + top]
            tenant.calls.append(("GET", "/api/indicators", len(page)))
        body: dict[str, Any] = {"@odata.context": "indicators", "value": page}
        if skip + top < len(items):
            body["@odata.nextLink"] = (
                f"{request.base_url}api/indicators?$skip={skip + top}&$top={top}"
            )
        return JSONResponse(body)

    @app.post("/api/indicators/import")
    async def import_indicators(request: Request) -> Response:
        body = await request.json()
        batch = body.get("Indicators") if isinstance(body, dict) else None
        if not isinstance(batch, list) or not batch:
            return _error(400, "InvalidRequestBody", "Indicators is required")
        if len(batch) > 500:
            return _error(400, "InvalidRequestBody", "Max batch size is 500")
        with tenant.lock:
            tenant.calls.append(("POST", "/api/indicators/import", len(batch)))
            results = [tenant.import_one(item) for item in batch]
        return JSONResponse({"@odata.context": "importResults", "value": results})

    @app.post("/api/indicators/BatchDelete")
    async def batch_delete(request: Request) -> Response:
        body = await request.json()
        ids = body.get("IndicatorIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            return _error(400, "InvalidRequestBody", "IndicatorIds is required")
        if len(ids) > 500:
            return _error(400, "InvalidRequestBody", "Max batch size is 500")
        with tenant.lock:
            tenant.calls.append(("POST", "/api/indicators/BatchDelete", len(ids)))
            for indicator_id in ids:
                tenant.remove(str(indicator_id))
        return Response(status_code=204)

    @app.delete("/api/indicators/{indicator_id}")
    async def delete_one(indicator_id: str) -> Response:
        with tenant.lock:
            tenant.calls.append(("DELETE", "/api/indicators/{id}", 1))
            if tenant.remove(indicator_id) is None:
                return _error(404, "NotFound", f"Indicator {indicator_id} was not found")
        return Response(status_code=204)

    return app


class FakeDefender:
    """The fake under uvicorn on a free port of 127.0.0.1, in a thread."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            make_app(tenant), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake Defender API did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
