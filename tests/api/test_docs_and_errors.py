"""`/docs` is served by the server alone (no CDN), and a 422 never echoes the rejected value."""

from __future__ import annotations

import re

from tests.api.conftest import Api, bearer

SECRET_LIKE = "s3cr3t-pasted-in-the-wrong-field"


def test_docs_load_nothing_from_another_site(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    text = page.text
    assert "cdn" not in text.lower()
    refs = re.findall(r'(?:src|href)=["\']([^"\']+)', text)
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"/docs loads {ref}"
        assert api.client.get(ref).status_code == 200, ref
    if "swagger-ui-bundle.js" not in text:  # the assets are not installed: the plain page
        assert "plain reference page" in text and "pip install swagger-ui-bundle" in text
        assert "/api/v1/sync" in text and "/api/v1/indicators" in text
    assert api.client.get("/redoc").status_code == 404  # FastAPI's CDN page is gone


def test_a_422_does_not_echo_the_rejected_value(api: Api) -> None:
    bad_value = api.client.post(
        "/api/v1/indicators",
        headers=api.admin,
        json={"indicatorValue": f"{SECRET_LIKE} not a name", "action": "Block"},
    )
    assert bad_value.status_code == 422
    assert SECRET_LIKE not in bad_value.text
    assert bad_value.json()["errors"][0]["field"] == "body.indicatorValue"
    bad_format = api.client.post(
        f"/api/v1/discovery/upload?format={SECRET_LIKE}", content=b"x", headers=api.admin
    )
    assert bad_format.status_code == 422 and SECRET_LIKE not in bad_format.text
    token = api.enroll("laptop-1")
    bad_event = api.client.post(
        "/api/v1/events",
        headers=bearer(token),
        json={"batchId": "b1", "events": [{"time": SECRET_LIKE, "domain": "a.example"}]},
    )
    assert bad_event.status_code == 422 and SECRET_LIKE not in bad_event.text
