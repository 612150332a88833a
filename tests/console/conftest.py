"""A real console: uvicorn on a free port of 127.0.0.1, the repository's policies applied to a
fresh store, and a few days of Cloud Discovery data (rollups) about a handful of machines."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from enforcer.api import ApiLimits
from enforcer.catalog import load_catalog
from enforcer.config import Settings
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.records import Record
from enforcer.pipeline.run import apply, load_desired, make_plan
from enforcer.store.alerts import insert_alerts
from enforcer.store.rollups import merge_rollup
from enforcer.webapp import create_web_app
from tests.api.conftest import running

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "console-admin-token-0123456789"
SECRET = "console-enrol-secret-0123456789"
HOSTS = [
    "www.dropbox.com", "trello.com", "api.trello.com", "github.com", "slack.com", "chatgpt.com",
    "mega.nz", "wetransfer.com", "files.acme-intranet.example", "cdn.acme-intranet.example",
    "tracker.weird-thing.example",
]  # fmt: skip
MACHINES = [f"pc-{i:02d}" for i in range(8)]
USERS = ["alice", "bob", "carol", "dave"]


@dataclass
class Console:
    """A running console and what tests need to drive it."""

    url: str
    engine: Engine
    policy_dir: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)


def records(now: dt.datetime, n: int = 1500, seed: int = 5) -> list[Record]:
    """Deterministic traffic over the last 5 days: machine pc-NN is mostly used by one user."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        m = rnd.randrange(len(MACHINES))
        user = USERS[m % len(USERS)] if rnd.random() < 0.9 else USERS[(m + 1) % len(USERS)]
        out.append(
            Record(
                time=now.timestamp() - rnd.uniform(60, 5 * 86400),
                host=rnd.choice(HOSTS),
                src_ip=f"10.0.{m}.{rnd.randrange(1, 3)}",
                user=user,
                device=MACHINES[m],
                bytes_up=rnd.randrange(100, 20_000),
                bytes_down=rnd.randrange(1_000, 200_000),
                action="blocked" if rnd.random() < 0.1 else "allowed",
            )
        )
    # Names as logs write them: a domain user, and a device name with a slash and a space.
    out += [
        Record(time=now.timestamp() - 3600 * h, host="slack.com", src_ip="10.9.0.1",
               user="CORP\\erin", device="lab/pc 9", bytes_up=500, bytes_down=5000)
        for h in range(1, 4)
    ]  # fmt: skip
    return out


def seed(engine: Engine, policy_dir: Path) -> None:
    """Apply the policies, then load discovery rollups and one open alert."""
    apply(engine, make_plan(engine, load_desired(policy_dir)), actor="test")
    now = dt.datetime.now(dt.UTC)
    agg = Aggregator(Attributor(load_catalog()))
    agg.add_all(records(now))
    merge_rollup(engine, agg.rollup())
    with engine.begin() as conn:
        alerts = [
                {"time": now - dt.timedelta(hours=2), "device_id": "pc-03", "user": "dave",
                 "domain": "mega.nz", "indicator": "mega.nz", "app_id": "mega", "action": "blocked",
                 "severity": "High", "status": "open", "event_id": 1},
                {"time": now - dt.timedelta(hours=30), "device_id": "pc-01", "user": "bob",
                 "domain": "wetransfer.com", "indicator": "wetransfer.com", "app_id": "wetransfer",
                 "action": "warned", "severity": "Medium", "status": "open", "event_id": 2},
        ]  # fmt: skip
        insert_alerts(conn, alerts)


@pytest.fixture
def console(engine: Engine, tmp_path: Path) -> Iterator[Console]:
    policy_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policy_dir)
    seed(engine, policy_dir)
    settings = Settings(
        admin_token=SecretStr(ADMIN), enroll_secret=SecretStr(SECRET), policy_dir=policy_dir
    )
    with running(create_web_app(settings, engine, ApiLimits(poll_interval=0.1))) as url:
        yield Console(url, engine, policy_dir)
