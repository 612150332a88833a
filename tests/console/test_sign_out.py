"""Signing out of the console ends the session on the server, not only in the browser."""

from __future__ import annotations

from tests.console.conftest import Console
from tests.console.test_access import csrf_of, session_cookie, sign_in


def test_a_copied_session_cookie_no_longer_works_after_sign_out(console: Console) -> None:
    with console.client() as client:
        copied = session_cookie(sign_in(client))
        other = session_cookie(sign_in(client))  # another browser, still signed in
        page = client.get("/console/", headers=copied)
        assert page.status_code == 200
        out = client.post("/console/logout", headers=copied, data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303

        # The cookie as it was before signing out (kept by an attacker, or another tab).
        refused = client.get("/console/apps", headers=copied)
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/console/login")
        assert client.get("/console/login", headers=copied).status_code == 200, "the form"
        assert client.get("/console/apps", headers=other).status_code == 200

        # Signing out twice (two tabs) is not an error; a new sign-in works.
        assert client.post("/console/logout", headers=copied).status_code == 303
        again = session_cookie(sign_in(client))
        assert client.get("/console/apps", headers=again).status_code == 200
