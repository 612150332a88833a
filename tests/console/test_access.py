"""Who can see and change what, without a browser: sign-in, cookies, CSRF, unauthenticated requests."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute

from enforcer.console import actions, pages
from tests.console.conftest import ADMIN, Console

SAMPLE = {
    "app_id": "trello",
    "name": "pc-01",
    "alert_id": "1",
    "indicator_id": "1",
    "device": "pc-01",
    "device_id": "pc-01",
}
PUBLIC_API = {"/healthz", "/readyz"}


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def _console_routes() -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    for router in [*(page.router for page in pages.PAGES), actions.router]:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if route.path != "/console/login":
                routes.extend((m, _fill(route.path)) for m in sorted(route.methods or ()))
    return routes


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(client: httpx.Client, token: str = ADMIN) -> httpx.Response:
    """Sign in like a browser: the login form, then its POST (cookies passed by hand: the
    session cookie is Secure, and httpx keeps Secure cookies for https only)."""
    form = client.get("/console/login")
    cookie = form.cookies["enforcer_console"]
    return client.post(
        "/console/login",
        data={"csrf": csrf_of(form.text), "token": token, "next": "/console/apps"},
        headers={"cookie": f"enforcer_console={cookie}"},
    )


def session_cookie(response: httpx.Response) -> dict[str, str]:
    return {"cookie": f"enforcer_console={response.cookies['enforcer_console']}"}


def test_login_sets_an_http_only_same_site_secure_cookie(console: Console) -> None:
    with console.client() as client:
        response = sign_in(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/apps"
        header = response.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "secure" in header
        page = client.get("/console/apps", headers=session_cookie(response))
        assert page.status_code == 200
        assert "Trello" in page.text
        assert page.headers["cache-control"] == "no-store"


def test_a_wrong_token_is_refused(console: Console) -> None:
    with console.client() as client:
        response = sign_in(client, "wrong-token-wrong-token-wrong")
        assert response.status_code == 401
        assert "not the admin token" in response.text
        assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "forged", ["", "garbage", "eyJzaWQiOiAieCIsICJpbiI6IHRydWUsICJleHAiOiA5OTk5OTk5OTk5fQ.bad"]
)
def test_every_console_page_and_form_needs_a_session(console: Console, forged: str) -> None:
    headers = {"cookie": f"enforcer_console={forged}"} if forged else {}
    with console.client() as client:
        for method, path in _console_routes():
            response = client.request(method, path, headers=headers, data={"csrf": "x"})
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/console/login"), (method, path)
            assert "trello" not in response.text.lower(), (method, path)
        # CSV exports too: a redirect, never rows.
        response = client.get("/console/apps?format=csv", headers=headers)
        assert response.status_code == 303 and "," not in response.text


def test_every_api_route_without_a_token_is_401(console: Console) -> None:
    with console.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
        for path, methods in paths.items():
            if path in PUBLIC_API:
                continue
            for method in methods:
                response = client.request(method.upper(), _fill(path))
                if path == "/api/v1/enroll":  # the enrolment secret is the credential, in the body
                    assert response.status_code in (401, 422), (method, path)
                else:
                    assert response.status_code == 401, (method, path, response.status_code)
                assert "trello" not in response.text.lower(), (method, path)


def test_a_console_session_is_not_an_api_credential(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        assert client.get("/api/v1/discovery/apps", headers=cookie).status_code == 401


def test_a_state_changing_post_without_the_csrf_token_is_403(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        for method, path in _console_routes():
            if method != "POST":
                continue
            for data in ({}, {"csrf": "forged"}):
                response = client.post(path, headers=cookie, data={**data, "tag": "unsanctioned"})
                assert response.status_code == 403, (path, data, response.status_code)
        assert not (console.policy_dir / "console.yaml").exists()
        # The token of another session does not work either.
        other = client.get("/console/login")
        response = client.post(
            "/console/apps/trello/tag",
            headers=cookie,
            data={"csrf": csrf_of(other.text), "tag": "unsanctioned"},
        )
        assert response.status_code == 403


def test_login_form_needs_its_csrf_token(console: Console) -> None:
    with console.client() as client:
        response = client.post("/console/login", data={"token": ADMIN})
        assert response.status_code == 403
        assert "set-cookie" in response.headers  # a fresh form session, not a signed-in one
        assert client.get("/console/", headers=session_cookie(response)).status_code == 303


def test_sign_out_ends_the_session_in_the_browser(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get("/console/", headers=cookie)
        response = client.post("/console/logout", headers=cookie, data={"csrf": csrf_of(page.text)})
        assert response.status_code == 303
        assert (
            'enforcer_console=""' in response.headers["set-cookie"]
            or "max-age=0" in response.headers["set-cookie"].lower()
        )


def test_next_never_leaves_the_console(console: Console) -> None:
    with console.client() as client:
        form = client.get("/console/login")
        cookie = {"cookie": f"enforcer_console={form.cookies['enforcer_console']}"}
        for target in ("https://evil.example/", "//evil.example/", "/console/../x", "/api/v1/sync"):
            response = client.post(
                "/console/login",
                headers=cookie,
                data={"csrf": csrf_of(form.text), "token": ADMIN, "next": target},
            )
            assert response.headers["location"] == "/console/", target


def test_names_from_logs_link_to_their_pages(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        users = client.get("/console/users", headers=cookie).text
        # CORP\\erin of the logs is the user erin (one person, one user); her page lists the form.
        link = re.search(r'href="(/console/users/erin[^"?]*)', users)
        assert link and link.group(1) == "/console/users/erin"
        user = client.get("/console/users/CORP%5Cerin", headers=cookie)
        assert user.status_code == 200 and "CORP\\erin" in user.text
        machine = re.search(r'href="(/console/machines/lab[^"?]+)', user.text)
        assert machine and machine.group(1) == "/console/machines/lab%2Fpc%209"
        page = client.get(machine.group(1) + "?tab=users", headers=cookie)
        assert page.status_code == 200 and "/console/users/erin" in page.text


def test_huge_numbers_in_console_urls_are_not_a_server_error(console: Console) -> None:
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get("/console/machines", params={"page": str(10**30)}, headers=cookie)
        assert page.status_code == 200
        csrf = client.get("/console/alerts", headers=cookie)
        token = re.search(r'name="csrf" value="([^"]+)"', csrf.text)
        data = {"csrf": token.group(1)} if token else {}
        for path in (f"/console/alerts/{10**30}/ack", f"/console/indicators/{10**30}/delete"):
            response = client.post(path, headers=cookie, data=data)
            assert 400 <= response.status_code < 500, (path, response.status_code)
