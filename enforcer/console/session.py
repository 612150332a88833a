"""Console sign-in: a signed session cookie, and CSRF tokens bound to it.

The console is signed in with an account's token, like the API (the admin token is the built-in
account ``admin``; others are made by ``enforcer accounts add``), but a browser should not keep
that token: the login form checks it once and sets a session cookie naming the account instead.
Each request reads the account again: a disabled account, or one given a new token, is signed
out at once, and its role (admin or analyst) is the store's, never the cookie's. The
cookie is HTTP-only (scripts cannot read it), Secure (sent over HTTPS, and over plain HTTP to
localhost only) and SameSite=Strict (never sent by another site's forms). Its value is signed with a
key derived from the admin token, so sessions survive a restart, work across workers, and all end
when the admin token is rotated.

Every state-changing form carries a CSRF token: an HMAC of the session's random id. Visitors who
have not signed in get an anonymous session too, so the login form is protected the same way, and
signing in issues a new session id (no session fixation).

Signing out ends the session on the server too (`enforcer.store.sessions`): its id is recorded
until the cookie's expiry, and a copy of the cookie no longer signs anyone in.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace

from fastapi import Request, Response
from sqlalchemy import Engine

from enforcer.store.accounts import BUILTIN, Account, Role, account_for_token, find_account
from enforcer.store.sessions import end_session, session_ended

COOKIE = "enforcer_console"
SESSION_SECONDS = 8 * 3600
"""A signed-in session lasts one working day."""
ANONYMOUS_SECONDS = 3600
"""How long a login form stays valid."""


class LoginRequiredError(Exception):
    """Raised by a page dependency when the request has no signed-in session (-> login page)."""


class CsrfError(Exception):
    """A state-changing form arrived without the CSRF token of its session (-> 403)."""


class RoleRequiredError(Exception):
    """A change was asked for by an account without the admin role (-> 403)."""

    def __init__(self, session: Session) -> None:
        super().__init__(f"the account {session.account!r} has the {session.role} role")
        self.session = session


@dataclass(frozen=True)
class Session:
    """A decoded, verified session cookie."""

    sid: str
    signed_in: bool
    expires: int
    account: str = ""
    """The signed-in account's name."""
    mark: str = ""
    """The start of the account's token hash when it signed in (a new token ends the session)."""
    role: str = ""
    """The account's role, read from the store with each request (never from the cookie)."""

    @property
    def can_change(self) -> bool:
        """Whether the account may change things (the admin role), or only read and export."""
        return self.role == Role.ADMIN.value


class SessionSigner:
    """Signs and verifies session cookies and CSRF tokens with a key derived from the admin token."""

    def __init__(self, admin_token: bytes) -> None:
        self._key = hmac.new(admin_token, b"enforcer console session v1", hashlib.sha256).digest()

    def _mac(self, purpose: bytes, payload: bytes) -> str:
        digest = hmac.new(self._key, purpose + b"\0" + payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def encode(self, session: Session) -> str:
        """The cookie value: base64 JSON payload, a dot, its MAC."""
        raw = json.dumps(
            {"sid": session.sid, "in": session.signed_in, "exp": session.expires,
             "acct": session.account, "mark": session.mark}
        )  # fmt: skip
        payload = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(b'cookie', payload.encode())}"

    def decode(self, value: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie value, or None when it is missing, forged or expired."""
        if not value or len(value) > 512 or "." not in value:
            return None
        payload, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(b"cookie", payload.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(
                str(data["sid"]), bool(data["in"]), int(data["exp"]),
                str(data.get("acct", "")), str(data.get("mark", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < (now if now is not None else time.time()):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        """The CSRF token forms of this session must send back."""
        return self._mac(b"csrf", session.sid.encode())

    def check_csrf(self, session: Session, token: str) -> bool:
        """Whether `token` is this session's CSRF token (constant time)."""
        return hmac.compare_digest(token.encode(), self.csrf_token(session).encode())


def new_session(*, signed_in: bool, account: Account | None = None) -> Session:
    """A fresh session with a new random id (signed in: as `account`)."""
    lifetime = SESSION_SECONDS if signed_in else ANONYMOUS_SECONDS
    return Session(
        secrets.token_urlsafe(18), signed_in, int(time.time()) + lifetime,
        account.name if account else "", account.token_mark if account else "",
        account.role.value if account else "",
    )  # fmt: skip


def set_cookie(response: Response, signer: SessionSigner, session: Session) -> None:
    """Attach the session cookie: HttpOnly, Secure, SameSite=Strict, scoped to the console."""
    response.set_cookie(
        COOKIE,
        signer.encode(session),
        max_age=max(0, session.expires - int(time.time())),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response) -> None:
    """End the session in the browser."""
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def read_session(request: Request, signer: SessionSigner, engine: Engine) -> Session | None:
    """The request's verified session, if any, with its account's role. A signed-in session
    that was signed out is none (its cookie may have been copied), and so is one whose account
    is gone, disabled or has a new token since it signed in."""
    session = signer.decode(request.cookies.get(COOKIE))
    if session is None or not session.signed_in:
        return session
    if session_ended(engine, session.sid):
        return None
    account = _signed_in_account(engine, session)
    if account is None:
        return None
    return replace(session, role=account.role.value)


def _signed_in_account(engine: Engine, session: Session) -> Account | None:
    if session.account == BUILTIN.name:
        return BUILTIN  # its sessions end with the admin token, which keys the signer
    if not session.account:
        return None  # a cookie from before accounts: sign in again
    with engine.connect() as conn:
        account = find_account(conn, session.account)
    if account is None or account.disabled_at is not None or account.token_mark != session.mark:
        return None
    return account


def account_for_login(engine: Engine, given: str, admin_token: bytes) -> Account | None:
    """The enabled account whose token was typed in the login form: the built-in admin's
    (compared in constant time) or a stored account's (found by its hash), else None."""
    if token_matches(given, admin_token):
        return BUILTIN
    token = given.strip()
    if not token or len(token) > 512:
        return None
    with engine.connect() as conn:
        account = account_for_token(conn, token)
    return account if account is not None and account.disabled_at is None else None


def sign_out(engine: Engine, session: Session) -> None:
    """End `session` on the server: its cookie, wherever it is, signs no one in any more."""
    end_session(engine, session.sid, dt.datetime.fromtimestamp(session.expires, dt.UTC))


def token_matches(given: str, admin_token: bytes) -> bool:
    """Constant-time comparison of a typed token with the admin token."""
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), admin_token)
