"""The pages the proxy shows users: block page, warning page with its "Continue" form, messages.

They are what a user sees of a policy, so they name the app and the indicator that decided. The
HTML lives in ``templates/*.html`` (package data) as `string.Template` texts so that a designer
can edit them without touching code; every value is HTML-escaped here, once.
"""

from __future__ import annotations

import datetime as dt
import html
from functools import cache
from importlib import resources
from string import Template


@cache
def _template(name: str) -> Template:
    text = (
        resources.files("enforcer.shim.proxy")
        .joinpath("templates", f"{name}.html")
        .read_text("utf-8")
    )
    return Template(text)


def _render(name: str, **values: str) -> bytes:
    escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
    return _template(name).substitute(escaped).encode("utf-8")


def block_page(*, app: str, host: str, indicator: str, action: str) -> bytes:
    """The HTML shown instead of a blocked plain-HTTP page."""
    return _render("block", app=app, host=host, indicator=indicator, action=action)


def warn_page(
    *,
    app: str,
    host: str,
    indicator: str,
    action: str,
    continue_url: str,
    expires: int,
    token: str,
    nonce: str,
    user: str,
    return_url: str,
    ttl: dt.timedelta,
) -> bytes:
    """The warning page whose "Continue" button POSTs a bypass request to `continue_url`
    (`token` signs the other fields; `user`: whom the page was shown to)."""
    return _render(
        "warn",
        app=app,
        host=host,
        indicator=indicator,
        action=action,
        continue_url=continue_url,
        expires=str(expires),
        token=token,
        nonce=nonce,
        user=user,
        return_url=return_url,
        ttl=describe_ttl(ttl),
    )


def message_page(title: str, message: str, link: str = "") -> bytes:
    """A short page with a title, a sentence and an optional link (for outcomes and errors)."""
    link_html = f'<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>' if link else ""
    page = _template("message").substitute(
        title=html.escape(title), message=html.escape(message), link=link_html
    )
    return page.encode("utf-8")


def denied_text(*, app: str, host: str, indicator: str, action: str, warn_url: str = "") -> bytes:
    """The short text body of a 403 answer to a denied CONNECT (browsers do not show it)."""
    lines = [f"{app} ({host}) is denied by policy: {action} on indicator {indicator}."]
    if warn_url:
        lines.append(f"To continue anyway, open {warn_url}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def describe_ttl(ttl: dt.timedelta) -> str:
    """A bypass duration in words: "24 hours", "30 minutes", "1 hour"."""
    minutes = int(ttl.total_seconds() // 60)
    if minutes and minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" + ("s" if hours != 1 else "")
    if minutes >= 1:
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{int(ttl.total_seconds())} seconds"
