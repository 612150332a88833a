"""``POST /api/v1/discovery/upload`` uses the policy repo, on both back ends: its alert policies
are checked on the upload's data (the blocked lines of the Squid sample raise blocked-app alerts
that name the upload's report, and the answer counts them), and its custom apps are discovered
under their ids."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from enforcer.api import ApiLimits, create_app
from tests.api.conftest import ADMIN, running, settings
from tests.conftest import write_policy

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[httpx.Client]:
    write_policy(
        tmp_path,
        "alerts.yaml",
        """
        alert_policies:
          - name: blocked app hit
            when: blocked_app
            severity: medium
        custom_apps:
          - {id: acme-share, name: Acme Share, vendor: Acme, category: file-sharing,
             domains: [share.acme.example]}
        """,
    )
    app = create_app(settings().model_copy(update={"policy_dir": tmp_path}), engine, ApiLimits())
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.headers["Authorization"] = f"Bearer {ADMIN}"
        yield http


def test_an_upload_raises_the_alert_policies_naming_its_report(client: httpx.Client) -> None:
    base = "/api/v1/discovery"
    done = client.post(
        f"{base}/upload?format=squid&report=proxy+sample",
        content=(LOGS / "squid-access.log").read_bytes(),
    )
    assert done.status_code == 200, done.text
    alerts = client.get(f"{base}/alerts?since=3650d&policy=blocked+app+hit").json()
    # The sample's three TCP_DENIED lines: github.com (carol), www.deepl.com (no user), claude.ai.
    assert sorted((a["app_id"], a["user"], a["hits"]) for a in alerts) == [
        ("claude", "dave", 1), ("deepl", "", 1), ("github", "carol", 1),
    ]  # fmt: skip
    assert {(a["report"], a["severity"], a["action"]) for a in alerts} == {
        ("proxy sample", "medium", "blocked_app")
    }
    assert done.json()["alerts"] == 3


def test_an_upload_attributes_the_policy_sets_custom_apps(client: httpx.Client) -> None:
    line = (
        f"{time.time() - 600:.3f}     84 10.1.3.27 TCP_MISS/200 70539 GET "
        "http://files.share.acme.example/x bob HIER_DIRECT/192.0.2.7 text/html\n"
    )
    done = client.post("/api/v1/discovery/upload?format=squid", content=line.encode())
    assert done.status_code == 200 and done.json()["attributed"] == 1, done.text
    apps = client.get("/api/v1/discovery/apps?since=1d").json()
    assert [a["app"] for a in apps] == ["acme-share"]
    assert client.get("/api/v1/discovery/domains?since=1d").json() == []
