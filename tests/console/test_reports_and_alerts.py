"""The console's report selector (every discovery page reads one named report or all) and its
alert page (alert policies' alerts, acknowledged or closed), against a real console."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from enforcer.catalog import load_catalog
from enforcer.discovery.ingest import ingest_files
from enforcer.store.alerts import list_alerts, raise_policy_alerts
from tests.console.conftest import Console
from tests.console.test_access import csrf_of, session_cookie, sign_in


def test_discovery_pages_show_the_selected_report(console: Console, tmp_path: Path) -> None:
    log = tmp_path / "proxy.log"
    at = dt.datetime.now(dt.UTC).timestamp() - 3600
    log.write_text(
        f"{at:.3f}  19812 10.1.2.20 TCP_TUNNEL/200 416002 CONNECT www.dropbox.com:443 zoe "
        "HIER_DIRECT/162.125.1.18 -\n"
    )
    ingest_files(console.engine, load_catalog(), [log], "squid", report_name="proxy today")
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        every = client.get("/console/apps?days=7", headers=cookie)
        assert every.status_code == 200
        assert "<option>proxy today</option>" in every.text  # the selector lists the reports
        one = client.get("/console/apps?days=7&report=proxy+today", headers=cookie)
        assert one.status_code == 200 and "<option selected>proxy today</option>" in one.text
        # The seeded traffic (trello, pc-NN machines) is in no named report: not shown here.
        assert "trello" in every.text and "trello" not in one.text and "dropbox" in one.text
        machines = client.get("/console/machines?days=7&report=proxy+today", headers=cookie)
        assert machines.status_code == 200 and "pc-03" not in machines.text
        assert "10.1.2.20" in machines.text
        gone = client.get("/console/apps?report=deleted+since", headers=cookie)
        assert gone.status_code == 404 and "no report named &#x27;deleted since&#x27;" in gone.text


def test_alert_policy_alerts_can_be_acknowledged_and_closed(console: Console) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with console.engine.begin() as conn:
        raise_policy_alerts(
            conn,
            [{"policy": "risky new app", "when": "new_app", "severity": "high", "machine": "",
              "user": "", "app_id": "mega", "domain": "", "count": 1, "time": now,
              "details": "new app mega (risk 9.1) first seen on pc-07"}],
            report="firewall upload",
        )  # fmt: skip
    with console.engine.connect() as conn:
        (alert,) = list_alerts(conn, policy="risky new app")
    with console.client() as client:
        cookie = session_cookie(sign_in(client))
        page = client.get("/console/alerts?policy=risky+new+app", headers=cookie)
        assert page.status_code == 200
        assert "first seen on pc-07" in page.text and "risky new app" in page.text
        assert "firewall upload" in page.text  # the report whose data raised it
        assert "mega.nz" not in page.text  # the indicators' alerts are filtered out
        closed = client.post(
            f"/console/alerts/{alert['id']}/close",
            headers=cookie,
            data={"csrf": csrf_of(page.text)},
        )
        assert closed.status_code == 303
        assert "first seen on pc-07" not in client.get("/console/alerts", headers=cookie).text
        listed = client.get("/console/alerts?status=closed", headers=cookie).text
        assert "first seen on pc-07" in listed and "closed by admin" in listed  # the account
