"""What every console route shares: its state on the app, sign-in and CSRF checks, rendering,
and the formatting filters of its templates.

Pages are rendered on the server (Jinja2) so that reading works without JavaScript; forms post
back and redirect (post/redirect/get), so a reload never repeats an action.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import Engine
from starlette.datastructures import FormData

from enforcer.catalog import Catalog, load_catalog
from enforcer.console.governance import effective_dir, staged_digest
from enforcer.console.report_cache import ReportCache
from enforcer.console.session import (
    CsrfError,
    LoginRequiredError,
    RoleRequiredError,
    Session,
    SessionSigner,
    read_session,
)
from enforcer.errors import PolicySetError
from enforcer.pipeline.run import load_state
from enforcer.policy.loader import directory_digest
from enforcer.store.named_reports import list_reports
from enforcer.textsafe import visible_bidi

HERE = Path(__file__).parent
PREFIX = "/console"
RANGES = (1, 7, 30, 90)
"""Time ranges offered, in days."""


class Limiter(Protocol):
    """A rate limit per key (the server's in-memory token buckets)."""

    def take(self, key: str) -> float:
        """Spend one attempt for `key`: 0.0 if allowed, else the seconds to wait."""
        ...


@dataclass
class ConsoleState:
    """Built once per app: what the console serves (policy directory, store), how it signs in
    (admin token, session signer, sign-in rate limit), its templates and its caches."""

    policy_dir: Path
    engine: Engine
    admin_token: bytes
    login_limiter: Limiter
    signer: SessionSigner
    templates: Jinja2Templates
    stale_after: dt.timedelta
    """How long a device may lack the newest revision before it is shown as stale."""
    reports: ReportCache = field(default_factory=ReportCache)
    _catalog_key: str = ""
    _catalog: Catalog | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def catalog_digest(self) -> str:
        """Digest of the policy files the cached catalog was built from (a cache key part)."""
        return self._catalog_key

    def catalog(self) -> Catalog:
        """The bundled catalog plus the policy set's custom apps (cached per policy digest).

        A policy set with errors still gets a console: its custom apps are left out until fixed.
        """
        try:
            key = directory_digest(self.policy_dir) + staged_digest(self.policy_dir)
        except (OSError, PolicySetError):  # unreadable, or no policy directory at all
            key = "unreadable"
        with self._lock:
            if self._catalog is not None and key == self._catalog_key:
                return self._catalog
        try:
            with effective_dir(self.policy_dir) as directory:  # staged custom apps included
                catalog = load_state(directory, catalog=load_catalog()).catalog
        except (PolicySetError, OSError):
            catalog = load_catalog()
        with self._lock:
            self._catalog, self._catalog_key = catalog, key
        return catalog


def human_bytes(value: Any) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as admins read traffic)."""
    n = float(value or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def number(value: Any) -> str:
    """12345 -> '12,345'."""
    return f"{int(value or 0):,}"


def when(value: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' (UTC), or a dash."""
    if not value:
        return "—"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    text = str(value)
    return text[:16].replace("T", " ")


def duration(seconds: Any) -> str:
    """Seconds as a short duration ('850 ms', '42 s', '12 min', '3 h', '5 d'), or a dash."""
    if seconds is None or seconds == "":
        return "—"
    value = max(0.0, float(seconds))
    if value < 1:
        return f"{value * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= size:
            return f"{value / size:.0f} {unit}"
    return f"{value:.0f} s"


def risk_class(score: Any) -> str:
    """CSS class of a risk score (0-10) or a risk level word."""
    if score is None or score == "":
        return "risk-none"
    if isinstance(score, str):
        return {"high": "risk-high", "medium": "risk-medium"}.get(score.lower(), "risk-low")
    return "risk-high" if score >= 7 else "risk-medium" if score >= 4 else "risk-low"


def segment(value: Any) -> str:
    """A name as one URL path segment (slashes, backslashes, '#' and '?' quoted)."""
    return quote(str(value), safe="@")


def make_templates() -> Jinja2Templates:
    """The console's Jinja2 environment (autoescaping on) with its formatting filters."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    # Every {{ value }}: bidirectional controls in names from devices and logs shown as
    # [U+202E] instead of reordering the page's text (markup is escaped by autoescaping).
    env.finalize = _finalize
    env.filters.update(
        seg=segment, bytes=human_bytes, number=number, when=when, risk_class=risk_class,
        duration=duration,
    )  # fmt: skip
    env.globals.update(prefix=PREFIX, ranges=RANGES)
    return templates


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup):  # already safe HTML: the replacement adds no markup
        return Markup(visible_bidi(str(value)))
    return visible_bidi(value) if isinstance(value, str) else value


def state(request: Request) -> ConsoleState:
    """The console's state."""
    found: ConsoleState = request.app.state.console
    return found


def require_login(request: Request) -> Session:
    """The signed-in session; otherwise the request is sent to the login page."""
    console = state(request)
    session = read_session(request, console.signer, console.engine)
    if session is None or not session.signed_in:
        raise LoginRequiredError
    return session


SignedIn = Annotated[Session, Depends(require_login)]


async def session_form(request: Request, session: SignedIn) -> FormData:
    """The posted form of a signed-in session, after checking its CSRF token (any role)."""
    form = await request.form()
    token = form.get("csrf")
    if not isinstance(token, str) or not state(request).signer.check_csrf(session, token):
        raise CsrfError
    return form


async def checked_form(request: Request, session: SignedIn) -> FormData:
    """The posted form of a change: a signed-in session with the admin role (an analyst gets
    403, `RoleRequiredError`), after checking its CSRF token."""
    form = await session_form(request, session)
    if not session.can_change:
        raise RoleRequiredError(session)
    return form


SessionForm = Annotated[FormData, Depends(session_form)]
"""A form any signed-in account may send (signing out)."""
CheckedForm = Annotated[FormData, Depends(checked_form)]
"""A form that changes something: the admin role only."""


def days_param(request: Request) -> int:
    """The page's time range in days (one of RANGES; 30 by default)."""
    try:
        days = int(request.query_params.get("days", "30"))
    except ValueError:
        return 30
    return days if days in RANGES else 30


def url_with(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return f"{request.url.path}?{query}" if query else request.url.path


def render(
    request: Request, template: str, session: Session | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """Render a page with what every page needs (CSRF token, current section, URL helper)."""
    console = state(request)
    context.update(
        request=request,
        csrf=console.signer.csrf_token(session) if session else "",
        signed_in=bool(session and session.signed_in),
        account=session.account if session else "",
        role=session.role if session else "",
        can_change=bool(session and session.can_change),
        url_with=lambda **kw: url_with(request, **kw),
    )
    if session and session.signed_in and "report_names" not in context:
        with console.engine.connect() as conn:
            context["report_names"] = [r.name for r in list_reports(conn)]
        context["report"] = request.query_params.get("report", "")
    response = console.templates.TemplateResponse(request, template, context, status_code=status)
    no_store(response)
    return response


def missing(request: Request, session: Session, what: str) -> HTMLResponse:
    """The 404 page of something the console does not know (an app, a machine, a user)."""
    return render(request, "missing.html", session, status=404, what=what)


def no_store(response: Response) -> Response:
    """Pages hold an organisation's data: never cache them (shared proxies, the back button)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    return response
