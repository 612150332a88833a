"""What the proxy shows and tells a user about a denial, and the warn-and-continue (bypass) flow.

* `denied_page`: the block page, or the warning page of a `warn` indicator, answered to a
  denied plain-HTTP request; `denied_text`: the short body of a 403 to a denied CONNECT;
* `notify_denied`: a desktop notification for a denied HTTPS connection (which cannot carry a
  page without decrypting), at most one per app and outcome every ``notify_interval`` seconds,
  pointing to the proxy's own warning page for `warn` indicators;
* `serve_local`: the proxy's own pages on loopback (``/warn?host=...`` and its ``/continue``
  form, and the PAC file ``/proxy.pac`` of `enforcer.shim.proxy.pac`), which only answer
  requests addressed to the proxy itself (a Host check against DNS rebinding);
* `continue_response`: the "Continue" form's answer. The form carries an HMAC token bound to
  the user it was shown to (`ProxyFrontEnd.principal`: the OS user behind the connection, or
  the client's address), the app, the host, an expiry and a random nonce, so only a warning
  page this process rendered for this user can grant a bypass, and only once: a token used by
  another user, or used again, is refused with a page that says so. The bypass is recorded in
  the front end's `BypassStore` and as a "bypassed" event, and the user is sent back to the
  page they wanted (on the bypassed host only).

The HTML is `enforcer.shim.proxy.pages`'s; the state (bypasses, token secret, notification
times) is the `ProxyFrontEnd`'s, shared by its per-user views.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from enforcer.decide.matcher import Verdict
from enforcer.models import Action, EventAction
from enforcer.shim.proxy import pac, pages
from enforcer.shim.proxy.http1 import (
    HEAD_END,
    BadRequest,
    RequestHead,
    Target,
    parse_host,
    response,
)
from enforcer.shim.verdict import Ruling

if TYPE_CHECKING:
    from enforcer.shim.proxy.frontend import ProxyFrontEnd

log = logging.getLogger(__name__)

INBAND_CONTINUE = "/.well-known/enforcer/continue"
"""Path on a warned plain-HTTP site where the proxy itself answers the "Continue" form."""


def app_key(verdict: Verdict) -> str:
    """What a bypass is recorded for: the app of a warn indicator, else the indicator itself."""
    return verdict.app_id or verdict.indicator


def denied_page(proxy: ProxyFrontEnd, ruling: Ruling, target: Target) -> bytes:
    """The 403 answer to a denied plain-HTTP request: a block page or a warning page."""
    verdict = ruling.verdict
    app = proxy.app_label(ruling)
    action = verdict.action.policy_word if verdict.action else ""
    if ruling.action is EventAction.BLOCKED:
        body = pages.block_page(
            app=app, host=ruling.name, indicator=verdict.indicator, action=action
        )
    else:
        # The form posts to the warned site itself, where the proxy answers it: a post from a
        # public site to a loopback address may be held up by the browser's local-network
        # protections.
        site = f"http://{target.http_authority}"
        body = _warn_page(proxy, ruling, site + target.path, site + INBAND_CONTINUE)
    return response(403, body)


def denied_text(proxy: ProxyFrontEnd, ruling: Ruling) -> bytes:
    """The 403 answer to a denied CONNECT (browsers do not show it; tools print it)."""
    verdict = ruling.verdict
    warn_url = proxy.warn_url(ruling.name) if ruling.action is EventAction.WARNED else ""
    body = pages.denied_text(
        app=proxy.app_label(ruling),
        host=ruling.name,
        indicator=verdict.indicator,
        action=verdict.action.policy_word if verdict.action else "",
        warn_url=warn_url,
    )
    return response(403, body, "text/plain; charset=utf-8")


def notify_denied(proxy: ProxyFrontEnd, ruling: Ruling) -> None:
    """Tell the user about a denied connection, unless told about this app just now."""
    app = proxy.app_label(ruling)
    key = (ruling.action, app)
    now = asyncio.get_running_loop().time()
    last = proxy.notified.get(key)
    if last is not None and now - last < proxy.limits.notify_interval:
        return
    proxy.notified[key] = now
    if ruling.action is EventAction.WARNED:
        title = f"{app} needs your confirmation"
        body = f"{ruling.name} was not opened. To continue, open {proxy.warn_url(ruling.name)}"
    else:
        title = f"{app} is blocked"
        indicator = ruling.verdict.indicator
        body = f"{ruling.name} is blocked by your organisation's policy ({indicator})."
    try:
        proxy.notifier(title, body)
    except Exception:
        log.exception("notifier failed")


async def serve_local(
    proxy: ProxyFrontEnd,
    head: RequestHead,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: Target | None,
    body: bytes = b"",
) -> None:
    """Answer a request for the proxy's own pages (``head.target`` is a path); `body`: bytes
    read after the head."""
    # Checking Host defeats DNS rebinding: a web page whose name resolves to 127.0.0.1
    # would otherwise be same-origin with these pages and could read a token.
    if host is None or not proxy.is_self(host):
        raise BadRequest(400, "not a proxy request and not addressed to this proxy")
    path, _, query = head.target.partition("?")
    if path == "/warn" and head.method in ("GET", "HEAD"):
        answer = _warn_response(proxy, parse_qs(query))
    elif path == "/proxy.pac" and head.method in ("GET", "HEAD"):
        direct = parse_qs(query).get("fallback") != ["none"]
        script = pac.pac_file(proxy.pages_host, proxy.pages_port, fallback_direct=direct)
        answer = response(200, script, pac.CONTENT_TYPE)
    elif path == "/continue" and head.method == "POST":
        form = await read_form(proxy, head, reader, body)
        answer = continue_response(proxy, form, writer)
    elif path in ("/warn", "/continue", "/proxy.pac"):
        raise BadRequest(405, "method not allowed")
    else:
        answer = response(404, pages.message_page("Not found", "No such page."))
    if head.method == "HEAD":
        answer = answer.partition(HEAD_END)[0] + HEAD_END
    writer.write(answer)
    await writer.drain()


async def read_form(
    proxy: ProxyFrontEnd, head: RequestHead, reader: asyncio.StreamReader, already: bytes = b""
) -> dict[str, list[str]]:
    """The urlencoded body of a POST to the proxy's pages (bounded in size and time); `already`:
    bytes of it read with the head."""
    length_text = head.header("content-length")
    if length_text is None:
        raise BadRequest(400, "form without Content-Length")
    length = int(length_text)
    if length > proxy.limits.max_form_bytes:
        raise BadRequest(413, "form too large")
    body = already[:length]
    try:
        async with asyncio.timeout(proxy.limits.head_timeout):
            if len(body) < length:
                body += await reader.readexactly(length - len(body))
    except TimeoutError:
        raise BadRequest(408, "form not received in time") from None
    return parse_qs(body.decode("latin-1"))


def continue_response(
    proxy: ProxyFrontEnd, form: dict[str, list[str]], writer: asyncio.StreamWriter
) -> bytes:
    """Grant the bypass a warning page's "Continue" form asks for, if its token is valid."""
    ruling = _warn_ruling(proxy, form.get("host"))
    if isinstance(ruling, bytes):
        return ruling
    app = app_key(ruling.verdict)
    now = proxy.clock()
    refusal = _check_token(proxy, form, app, ruling.name, now.timestamp())
    if refusal:
        page = pages.message_page("Please try again", refusal, proxy.warn_url(ruling.name))
        return response(403, page)
    user = proxy.principal
    proxy.bypasses.grant(user, app, now)
    log.info("user %s bypassed the warning for %s", user, app)
    peer = writer.get_extra_info("peername")
    client_ip = peer[0] if isinstance(peer, tuple) else ""
    proxy.record(ruling._replace(action=EventAction.BYPASSED), now, client_ip, port=0)
    return_url = _safe_return(form.get("return"), ruling.name)
    ttl = pages.describe_ttl(proxy.bypasses.ttl)
    message = f"You can use {proxy.app_label(ruling)} for {ttl}."
    body = pages.message_page("Continue", message, return_url)
    return response(303, body, extra=[("Location", return_url)])


def _check_token(
    proxy: ProxyFrontEnd, form: dict[str, list[str]], app: str, host: str, now: float
) -> str:
    """Why a "Continue" form cannot grant a bypass ("" if it can; its token is then spent)."""

    def field(name: str) -> str:
        return form.get(name, [""])[0]

    try:
        expires = int(field("expires"))
    except ValueError:
        expires = 0
    token, nonce, shown_to = field("token"), field("nonce"), field("user")
    user = proxy.principal
    if expires < now:
        return "This confirmation has expired."
    if not _same(token, _token(proxy, user, app, host, expires, nonce)):
        if shown_to != user and _same(token, _token(proxy, shown_to, app, host, expires, nonce)):
            return (
                f"This confirmation was shown to another user ({shown_to}), not to you "
                f"({user}). Each person confirms for themselves."
            )
        return "This confirmation was not made on this computer's warning page."
    for spent, until in list(proxy.spent.items()):
        if until < now:
            del proxy.spent[spent]
    if token in proxy.spent:
        return "This confirmation was already used. Open the warning page again to continue."
    proxy.spent[token] = expires
    return ""


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _warn_ruling(proxy: ProxyFrontEnd, host_values: list[str] | None) -> Ruling | bytes:
    """The warn ruling for the page's host, or the response explaining why there is none."""
    try:
        host = parse_host(host_values[0]) if host_values else ""
    except BadRequest:
        host = ""
    if not host:
        return response(400, pages.message_page("Bad request", "Which site?"))
    ruling = proxy.decide([host])
    if ruling.verdict.action is not Action.WARN:
        page = pages.message_page("Nothing to confirm", f"No warning applies to {host}.")
        return response(404, page)
    if ruling.action is EventAction.BYPASSED:
        message = f"You already chose to continue to {proxy.app_label(ruling)}."
        return response(200, pages.message_page("Continue", message, f"https://{host}/"))
    return ruling


def _warn_response(proxy: ProxyFrontEnd, query: dict[str, list[str]]) -> bytes:
    ruling = _warn_ruling(proxy, query.get("host"))
    if isinstance(ruling, bytes):
        return ruling
    return_url = _safe_return(query.get("return"), ruling.name)
    return response(200, _warn_page(proxy, ruling, return_url))


def _warn_page(
    proxy: ProxyFrontEnd, ruling: Ruling, return_url: str, continue_url: str = ""
) -> bytes:
    verdict = ruling.verdict
    expires = int((proxy.clock() + proxy.limits.token_lifetime).timestamp())
    user = proxy.principal
    nonce = secrets.token_urlsafe(12)
    return pages.warn_page(
        app=proxy.app_label(ruling),
        host=ruling.name,
        indicator=verdict.indicator,
        action=verdict.action.policy_word if verdict.action else "",
        continue_url=continue_url or f"{proxy.pages_url}/continue",
        expires=expires,
        token=_token(proxy, user, app_key(verdict), ruling.name, expires, nonce),
        nonce=nonce,
        user=user,
        return_url=return_url,
        ttl=proxy.bypasses.ttl,
    )


def _token(proxy: ProxyFrontEnd, user: str, app: str, host: str, expires: int, nonce: str) -> str:
    """Proof that a "Continue" POST comes from a warning page this process rendered for
    `user`; the nonce makes every page's token a different one, so each can be spent once."""
    message = f"{user}\x1f{app}\x1f{host}\x1f{expires}\x1f{nonce}".encode()
    return hmac.new(proxy.secret, message, hashlib.sha256).hexdigest()


def _safe_return(values: list[str] | None, host: str) -> str:
    """The page to go back to after "Continue": only on the bypassed host (no open redirect)."""
    if values:
        url = urlsplit(values[0])
        if url.scheme in ("http", "https") and (url.hostname or "").rstrip(".") == host:
            return url.geturl()
    return f"https://{host}/"
