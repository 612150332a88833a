"""Console sign-in: a signed session cookie, and CSRF tokens bound to it.

The console is signed in with the admin token, like the API, but a browser should not keep that
token: the login form checks it once (in constant time) and sets a session cookie instead. The
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
from dataclasses import dataclass

from fastapi import Request, Response
from sqlalchemy import Engine

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


@dataclass(frozen=True)
class Session:
    """A decoded, verified session cookie."""

    sid: str
    signed_in: bool
    expires: int


class SessionSigner:
    """Signs and verifies session cookies and CSRF tokens with a key derived from the admin token."""

    def __init__(self, admin_token: bytes) -> None:
        self._key = hmac.new(admin_token, b"enforcer console session v1", hashlib.sha256).digest()

    def _mac(self, purpose: bytes, payload: bytes) -> str:
        digest = hmac.new(self._key, purpose + b"\0" + payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def encode(self, session: Session) -> str:
        """The cookie value: base64 JSON payload, a dot, its MAC."""
        raw = json.dumps({"sid": session.sid, "in": session.signed_in, "exp": session.expires})
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
            session = Session(str(data["sid"]), bool(data["in"]), int(data["exp"]))
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


def new_session(*, signed_in: bool) -> Session:
    """A fresh session with a new random id."""
    lifetime = SESSION_SECONDS if signed_in else ANONYMOUS_SECONDS
    return Session(secrets.token_urlsafe(18), signed_in, int(time.time()) + lifetime)


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
    """The request's verified session, if any; a signed-in session that was signed out is
    none (its cookie may have been copied)."""
    session = signer.decode(request.cookies.get(COOKIE))
    if session is not None and session.signed_in and session_ended(engine, session.sid):
        return None
    return session


def sign_out(engine: Engine, session: Session) -> None:
    """End `session` on the server: its cookie, wherever it is, signs no one in any more."""
    end_session(engine, session.sid, dt.datetime.fromtimestamp(session.expires, dt.UTC))


def token_matches(given: str, admin_token: bytes) -> bool:
    """Constant-time comparison of a typed token with the admin token."""
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), admin_token)
