"""Defender for Endpoint sink: reconcile our indicators into a tenant's Indicators API.

For organisations that also run Defender: the same device-wide indicator set, enforced by
Defender's network protection as well as by our shim. Only indicators we own are ever touched:
ours carry ``Managed by Enforcer`` in their description (policy indicators already do; the sink
adds it to the others). An indicator someone else created for the same domain is left alone and
the domain is reported as skipped: import would otherwise overwrite it.

The documented limits are honoured rather than discovered:

* 15,000 active indicators per tenant: a plan that would exceed it is refused before any write
  (the tenant keeps its last good state), and deletes run before imports;
* 500 indicators per ``POST /api/indicators/import`` and per ``POST /api/indicators/BatchDelete``;
* 30 write calls per minute: calls are paced client-side; a 429 is still honoured by waiting its
  ``Retry-After`` (bounded: a longer wait fails the run as a `TemporaryError`);
* OAuth2 client credentials; an expired token (401) is refreshed once, then the call repeated.

Action mapping: Block, Warn, Audit and Allowed are Defender's own; Alert is Defender's legacy
value, sent as Audit with ``generateAlert`` (how Defender alerts on domains today).
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from enforcer.config import Settings
from enforcer.decide.expand import MANAGED_MARKER
from enforcer.errors import TemporaryError
from enforcer.models import INDICATOR_TYPE_DOMAIN, Action, Indicator
from enforcer.plan.model import ChangeAction
from enforcer.sinks.base import SinkChange, SinkError, SinkPlan, SinkResult, device_wide, reason

NAME = "defender"
_ACTIONS = {
    Action.BLOCK: "Block",
    Action.WARN: "Warn",
    Action.AUDIT: "Audit",
    Action.ALERT: "Audit",
    Action.ALLOWED: "Allowed",
}
_COMPARED = (
    "action", "severity", "title", "description", "expirationTime", "generateAlert", "application"
)  # fmt: skip
_MAX_PAGES = 1000

Sleep = Callable[[float], None]


class DefenderError(SinkError):
    """The tenant refused a request for a reason a retry cannot fix (400, 403, a bad secret)."""


@dataclass(frozen=True)
class Work:
    """What `apply` sends: indicators to import (create or update) and ids to delete."""

    imports: tuple[dict[str, Any], ...]
    delete_ids: tuple[str, ...]


def to_defender(ind: Indicator) -> dict[str, Any]:
    """Our indicator as the import endpoint wants it, marked as ours."""
    description = ind.description or f"Enforcer {ind.action.policy_word} {ind.value}"
    if MANAGED_MARKER not in description:
        description = f"{description} ({MANAGED_MARKER})"
    return {
        "indicatorValue": ind.value,
        "indicatorType": INDICATOR_TYPE_DOMAIN,
        "action": _ACTIONS[ind.action],
        "severity": ind.severity.value,
        "title": ind.title or f"Enforcer: {ind.value}",
        "description": description,
        "expirationTime": _utc_text(ind.expiration),
        "generateAlert": ind.generate_alert or ind.action is Action.ALERT,
        "application": ind.app_id or "Enforcer",
    }


def _utc_text(value: dt.datetime | str | None) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owned(remote: Mapping[str, Any]) -> bool:
    """Whether a tenant indicator is ours: a domain indicator carrying the marker."""
    text = f"{remote.get('title') or ''} {remote.get('description') or ''}"
    return remote.get("indicatorType") == INDICATOR_TYPE_DOMAIN and MANAGED_MARKER in text


def _comparable(data: Mapping[str, Any]) -> tuple[Any, ...]:
    values = dict(data)
    values["expirationTime"] = _utc_text(values.get("expirationTime"))
    values["generateAlert"] = bool(values.get("generateAlert"))
    return tuple(values.get(name) or None for name in _COMPARED)


def _summary(data: Mapping[str, Any]) -> str:
    return f"{data.get('action')}/{data.get('severity')}"


def diff(
    desired: Iterable[Indicator],
    remote: Iterable[Mapping[str, Any]],
    revision: int,
    settings: Settings,
) -> SinkPlan:
    """The changes that make the tenant's Enforcer-owned indicators match `desired` (pure)."""
    wanted = {value: (ind, to_defender(ind)) for value, ind in device_wide(desired).items()}
    ours: dict[str, Mapping[str, Any]] = {}
    theirs: dict[str, Mapping[str, Any]] = {}
    delete_ids: list[str] = []
    changes: list[SinkChange] = []
    total = 0
    for item in remote:
        total += 1
        value = str(item.get("indicatorValue", "")).lower()
        if not owned(item):
            if item.get("indicatorType") == INDICATOR_TYPE_DOMAIN:
                theirs[value] = item
        elif value in ours or value not in wanted:
            # Not wanted any more, or a duplicate of one of ours: remove it.
            delete_ids.append(str(item["id"]))
            changes.append(
                SinkChange(
                    ChangeAction.DELETE, value, _summary(item), None, "no longer in the store"
                )
            )
        else:
            ours[value] = item
    imports: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for value in sorted(wanted):
        ind, data = wanted[value]
        if value in theirs:
            other = theirs[value]
            skipped.append(
                (value, f"held by indicator {other.get('id')} that Enforcer does not own")
            )
            continue
        current = ours.get(value)
        if current is None:
            changes.append(
                SinkChange(ChangeAction.CREATE, value, None, _summary(data), reason(ind))
            )
        elif _comparable(current) != _comparable(data):
            changes.append(
                SinkChange(
                    ChangeAction.UPDATE, value, _summary(current), _summary(data), reason(ind)
                )
            )
        else:
            continue
        imports.append(data)
    after = total - len(delete_ids) + sum(c.action is ChangeAction.CREATE for c in changes)
    if after > settings.defender_max_indicators:
        raise SinkError(
            f"sink defender: the tenant would hold {after:,} indicators ({total:,} now, "
            f"{total - len(ours) - len(delete_ids):,} of them not Enforcer's) but allows "
            f"{settings.defender_max_indicators:,}; nothing was sent. Narrow the device-wide "
            "policy or remove indicators in the tenant."
        )
    changes.sort(key=lambda c: (c.name, c.action))
    return SinkPlan(
        sink=NAME,
        target=settings.defender_tenant_url,
        revision=revision,
        changes=tuple(changes),
        entries=len(wanted) - len(skipped),
        skipped=tuple(skipped),
        payload=Work(tuple(imports), tuple(delete_ids)),
    )


def plan(desired: Iterable[Indicator], revision: int, settings: Settings) -> SinkPlan:
    """Read the tenant's indicators, then diff them against `desired`."""
    with DefenderClient(settings) as client:
        remote = client.list_indicators()
    return diff(desired, remote, revision, settings)


def apply(plan: SinkPlan, settings: Settings) -> SinkResult:
    """Delete, then import in batches (so the tenant never passes its limit on the way)."""
    work: Work = plan.payload
    counts = plan.counts
    size = settings.defender_batch_size
    failed: list[tuple[str, str]] = []
    with DefenderClient(settings) as client:
        for start in range(0, len(work.delete_ids), size):
            client.batch_delete(work.delete_ids[start : start + size])
        for start in range(0, len(work.imports), size):
            failed += client.import_indicators(work.imports[start : start + size])
    return SinkResult(
        sink=NAME,
        target=plan.target,
        revision=plan.revision,
        created=counts[ChangeAction.CREATE],
        updated=counts[ChangeAction.UPDATE],
        deleted=counts[ChangeAction.DELETE],
        failed=tuple(failed),
    )


class DefenderClient:
    """The few Indicators API calls the sink makes, with token handling, pacing and retries."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (settings.defender_token_url and settings.defender_client_id):
            raise SinkError(
                "sink defender: set ENFORCER_DEFENDER_TOKEN_URL, ENFORCER_DEFENDER_CLIENT_ID "
                "and ENFORCER_DEFENDER_CLIENT_SECRET"
            )
        self.settings = settings
        self.base = settings.defender_tenant_url.rstrip("/")
        self.http = httpx.Client(timeout=settings.defender_timeout)
        self._sleep = sleep
        self._clock = clock
        self._token: str | None = None
        self._token_until = 0.0
        self._calls: collections.deque[float] = collections.deque()

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    # --- the API -----------------------------------------------------------------------------

    def list_indicators(self) -> list[dict[str, Any]]:
        """Every indicator of the tenant, following ``@odata.nextLink`` pages."""
        url: str | None = f"{self.base}/api/indicators"
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                return items
            data = self.call("GET", url).json()
            items += data.get("value", [])
            url = data.get("@odata.nextLink")
            if url is not None and _origin(url) != _origin(self.base):
                raise DefenderError(f"sink defender: refusing a next page on another host: {url}")
        raise DefenderError(f"sink defender: more than {_MAX_PAGES} pages of indicators")

    def import_indicators(self, batch: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
        """Create or update one batch; the (value, reason) of each indicator the tenant refused."""
        response = self.call(
            "POST", f"{self.base}/api/indicators/import", json={"Indicators": list(batch)}
        )
        return [
            (str(r.get("indicator", "")), str(r.get("failureReason") or "refused"))
            for r in response.json().get("value", [])
            if r.get("isFailed")
        ]

    def batch_delete(self, ids: Iterable[str]) -> None:
        self.call(
            "POST", f"{self.base}/api/indicators/BatchDelete", json={"IndicatorIds": list(ids)}
        )

    # --- plumbing ----------------------------------------------------------------------------

    def call(self, method: str, url: str, json: Any = None) -> httpx.Response:
        """One API call: paced, authorised, retried on 429 / 5xx / network errors (bounded)."""
        settings = self.settings
        refreshed = False
        attempt = 0
        while True:
            self._pace()
            try:
                response = self.http.request(
                    method, url, json=json, headers={"Authorization": f"Bearer {self.token()}"}
                )
            except httpx.TransportError as exc:
                wait = self._backoff(attempt, f"{method} {_path(url)}: {exc}")
                attempt += 1
                self._sleep(wait)
                continue
            status = response.status_code
            if status == 401 and not refreshed:
                self._token = None  # expired or revoked: one fresh token, then the same call
                refreshed = True
                continue
            if status == 429:
                wait = _retry_after(response) or 2.0**attempt
                if (
                    wait > settings.defender_max_retry_after
                    or attempt >= settings.defender_max_retries
                ):
                    raise TemporaryError(
                        f"sink defender: throttled (429) on {method} {_path(url)}; "
                        f"retry after {wait:.0f} s"
                    )
                attempt += 1
                self._sleep(wait)
                continue
            if status >= 500:
                wait = self._backoff(attempt, f"{method} {_path(url)}: HTTP {status}")
                attempt += 1
                self._sleep(wait)
                continue
            if status >= 400:
                raise DefenderError(
                    f"sink defender: {method} {_path(url)}: HTTP {status}: {_error_text(response)}"
                )
            return response

    def _backoff(self, attempt: int, what: str) -> float:
        if attempt >= self.settings.defender_max_retries:
            raise TemporaryError(f"sink defender: {what} (gave up after {attempt} retries)")
        return float(min(2.0**attempt, self.settings.defender_max_retry_after))

    def _pace(self) -> None:
        """At most `defender_calls_per_minute` calls in any 60 seconds."""
        now = self._clock()
        window = self._calls
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= self.settings.defender_calls_per_minute:
            self._sleep(60.0 - (now - window[0]))
            window.popleft()
        window.append(self._clock())

    def token(self) -> str:
        """A bearer token from the client-credentials grant, reused until shortly before expiry."""
        if self._token is not None and self._clock() < self._token_until:
            return self._token
        settings = self.settings
        secret = settings.defender_client_secret
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.defender_client_id,
            "client_secret": secret.get_secret_value() if secret else "",
            "scope": settings.defender_scope,
        }
        try:
            response = self.http.post(settings.defender_token_url, data=form)
        except httpx.TransportError as exc:
            raise TemporaryError(f"sink defender: token endpoint: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TemporaryError(f"sink defender: token endpoint: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DefenderError(
                f"sink defender: the token endpoint refused the client credentials: "
                f"HTTP {response.status_code}: {_error_text(response)}"
            )
        data = response.json()
        self._token = str(data["access_token"])
        self._token_until = self._clock() + max(float(data.get("expires_in", 3600)) - 60.0, 0.0)
        return self._token


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def _error_text(response: httpx.Response) -> str:
    """The message of an OData or OAuth2 error body, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        if "error_description" in body:
            return f"{error}: {body['error_description']}"
        if isinstance(error, str):
            return error
    return str(body)[:300]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _path(url: str) -> str:
    return urlsplit(url).path
