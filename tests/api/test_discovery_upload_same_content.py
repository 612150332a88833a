"""The same log content uploaded again through the API is skipped, and the answer says so
(issue 15: the squid sample uploaded twice counted Dropbox 2 -> 4). On both back ends."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Api

SQUID = Path(__file__).resolve().parents[2] / "examples" / "logs" / "squid-access.log"
BASE = "/api/v1/discovery"


def _upload(api: Api, report: str) -> dict[str, object]:
    done = api.client.post(
        f"{BASE}/upload?format=squid&report={report}", content=SQUID.read_bytes(),
        headers=api.admin,
    )  # fmt: skip
    assert done.status_code == 200, done.text
    answer: dict[str, object] = done.json()
    return answer


def _dropbox(api: Api) -> int:
    got = api.client.get(f"{BASE}/apps?since=3650d", headers=api.admin)
    assert got.status_code == 200, got.text
    return int({a["app"]: a["transactions"] for a in got.json()}["dropbox"])


def test_the_api_skips_content_it_was_given_before(api: Api) -> None:
    _upload(api, "first")
    once = _dropbox(api)
    again = _upload(api, "again")
    assert again["records"] == 0 and isinstance(again["skipped"], list), again
    assert len(again["skipped"]) == 1, again
    assert _dropbox(api) == once == 2, "counted once, not twice"
