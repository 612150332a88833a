"""Realistic, current sample logs for Cloud Discovery: a month of an office's traffic, made up.

`enforcer discovery sample --days 30 --devices 50` writes what a new admin needs to see the
reports and the console filled: a Squid ``access.log`` from the office proxy and a Zscaler NSS web
feed (name=value pairs) from the laptops that work remotely, in the layouts the uploader reads.
The traffic fills the last `days` UTC days, today up to a minute before the time it is made, so
``--since 30d`` covers all of it.

Given the same seed, device count and number of days, the logs differ only in their dates: the
same requests, bytes, users and devices (so the quiet "weekend" days are every sixth and seventh
day of the period, not Saturdays and Sundays). That keeps the README's figures reproducible (a test
compares them with what the generator gives).

Nothing here is real: device names, users and addresses are invented (addresses from the ranges
set aside for documentation and benchmarking); the domains are those of real apps in the catalog,
so that they are attributed as a real log's would be.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from enforcer.catalog import Catalog

SQUID_FILE = "squid-access.log"
ZSCALER_FILE = "zscaler-nss.log"
REMOTE_SHARE = 0.3
"""Share of the devices that work remotely (their traffic goes through Zscaler, not the proxy)."""


@dataclass(frozen=True, slots=True)
class AppUse:
    """How much an app is used: `reach` is the share of devices that use it at all, `weight`
    how often a device that uses it does, `up`/`down` the median bytes of one request."""

    host: str
    """The catalog app id, or a domain name for traffic to no catalog app."""
    reach: float
    weight: float
    up: int
    down: int
    denied_by_proxy: bool = False


MIX: tuple[AppUse, ...] = (
    AppUse("microsoft-teams", 1.0, 14, 4_000, 60_000),
    AppUse("outlook", 1.0, 14, 6_000, 40_000),
    AppUse("sharepoint", 0.9, 6, 20_000, 120_000),
    AppUse("slack", 0.7, 10, 3_000, 30_000),
    AppUse("zoom", 0.6, 5, 8_000, 200_000),
    AppUse("github", 0.4, 8, 10_000, 90_000),
    AppUse("jira", 0.5, 5, 3_000, 50_000),
    AppUse("confluence", 0.5, 4, 2_000, 70_000),
    AppUse("salesforce", 0.3, 6, 5_000, 60_000),
    AppUse("google-drive", 0.3, 3, 90_000, 150_000),
    AppUse("chatgpt", 0.5, 5, 6_000, 25_000),
    AppUse("claude", 0.15, 4, 6_000, 25_000),
    AppUse("deepl", 0.2, 2, 4_000, 10_000),
    AppUse("grammarly", 0.15, 3, 2_000, 8_000),
    AppUse("notion", 0.15, 3, 3_000, 40_000),
    AppUse("figma", 0.1, 4, 10_000, 300_000),
    AppUse("dropbox", 0.25, 3, 250_000, 180_000),
    AppUse("wetransfer", 0.1, 1, 2_000_000, 20_000),
    AppUse("box", 0.1, 2, 60_000, 90_000),
    AppUse("mega", 0.06, 1, 1_500_000, 40_000, denied_by_proxy=True),
    AppUse("pastebin", 0.08, 1, 6_000, 12_000),
    AppUse("ngrok", 0.04, 2, 20_000, 20_000),
    AppUse("linkedin", 0.7, 3, 2_000, 80_000),
    AppUse("youtube", 0.6, 3, 1_000, 900_000),
    AppUse("spotify", 0.3, 4, 1_000, 400_000),
    AppUse("whatsapp", 0.3, 2, 3_000, 9_000),
    AppUse("reddit", 0.2, 2, 1_000, 60_000),
    AppUse("telegram", 0.05, 2, 3_000, 9_000),
    AppUse("protonvpn", 0.03, 1, 500, 2_000, denied_by_proxy=True),
    AppUse("intranet.contoso.com", 1.0, 6, 2_000, 50_000),
    AppUse("status.fabrikam-logistics.com", 0.2, 1, 500, 3_000),
)
"""What the made-up office uses: its suite, its tools, some shadow IT and some leisure."""

FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
)  # fmt: skip
LAST_NAMES = ("smith", "khan", "garcia", "muller", "rossi", "tanaka", "silva", "novak")


@dataclass(frozen=True, slots=True)
class Device:
    """A made-up laptop: its name, its user, its address, and whether it works remotely."""

    hostname: str
    user: str
    ip: str
    remote: bool


@dataclass(frozen=True, slots=True)
class Request:
    """One request of the sample: who, when, to which host, how many bytes, allowed or not."""

    time: float
    device: Device
    host: str
    up: int
    down: int
    denied: bool


def devices(count: int) -> list[Device]:
    """`count` devices; the last `REMOTE_SHARE` of them work remotely."""
    remote_from = count - round(count * REMOTE_SHARE)
    out = []
    for i in range(count):
        first = FIRST_NAMES[i % len(FIRST_NAMES)]
        user = f"{first}.{LAST_NAMES[(i // len(FIRST_NAMES)) % len(LAST_NAMES)]}"
        ip = (
            f"10.20.{1 + i // 200}.{10 + i % 200}"
            if i < remote_from
            else f"100.64.{i // 200}.{10 + i % 200}"
        )
        out.append(Device(f"CONTOSO-LT{i + 1:03d}", user, ip, i >= remote_from))
    return out


def requests(
    catalog: Catalog, *, days: int, device_count: int, now: dt.datetime, seed: int = 1
) -> Iterator[Request]:
    """The sample's requests, in time order, over the `days` UTC days that end with today (up to
    a minute before `now`). What they are, and on which of those days, depends only on `seed`,
    `days` and `device_count`."""
    rng = random.Random(seed)
    fleet = devices(device_count)
    hosts = {use.host: _hosts(catalog, use.host) for use in MIX}
    # Which apps each device uses at all, and how much it works (a heavy user makes more).
    habits = [
        ([use for use in MIX if rng.random() < use.reach], rng.uniform(0.5, 1.5)) for _ in fleet
    ]
    # Whole UTC days, as the reports count them (`--since 30d` is today and the 29 days before
    # it); today's share of the traffic falls between midnight and a minute ago.
    today = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    for day in range(days):
        day_start = today - (days - 1 - day) * 86_400
        slot = 86_400.0 if day < days - 1 else max(60.0, now.timestamp() - 60 - day_start)
        # Two quiet days in every seven, counted from the first day rather than from the
        # calendar's weekend: otherwise the figures would change with the day of the week.
        weekend = day % 7 in (5, 6)
        batch: list[Request] = []
        for device, (used, zeal) in zip(fleet, habits, strict=True):
            if not used or (weekend and rng.random() < 0.8):
                continue
            weights = [use.weight for use in used]
            for _ in range(int(rng.uniform(15, 45) * zeal)):
                use = rng.choices(used, weights)[0]
                host = rng.choice(hosts[use.host])
                denied = use.denied_by_proxy and not device.remote
                up = 0 if denied else int(rng.lognormvariate(0, 0.8) * use.up)
                down = 3_900 if denied else int(rng.lognormvariate(0, 0.8) * use.down)
                when = day_start + rng.random() * slot
                batch.append(Request(when, device, host, up, down, denied))
        batch.sort(key=lambda r: r.time)
        yield from batch


def _hosts(catalog: Catalog, app_or_domain: str) -> list[str]:
    """Host names a browser would ask for: an app's first domains with a usual subdomain."""
    if app_or_domain not in catalog:
        return [app_or_domain]
    domains = list(catalog.apps[app_or_domain].domains[:2])
    return [*domains, *(f"www.{d}" for d in domains[:1] if d.count(".") == 1)]


def _ip(host: str) -> str:
    """A stable made-up server address for a host (198.18.0.0/15, set aside for benchmarks)."""
    digest = hashlib.sha256(host.encode()).digest()
    return f"198.{18 + digest[0] % 2}.{digest[1]}.{1 + digest[2] % 254}"


def squid_line(r: Request) -> str:
    """Squid native ``access.log``: what the proxy sent back is the only byte count."""
    elapsed = 40 + r.down // 2_000
    code = "TCP_DENIED/403" if r.denied else "TCP_TUNNEL/200"
    peer = "HIER_NONE/-" if r.denied else f"HIER_DIRECT/{_ip(r.host)}"
    return (
        f"{r.time:.3f} {elapsed:6d} {r.device.ip} {code} {r.down} CONNECT {r.host}:443 "
        f"{r.device.user} {peer} -"
    )


def zscaler_line(r: Request) -> str:
    """Zscaler NSS web feed, name=value pairs separated by tabs."""
    fields = {
        "epochtime": str(int(r.time)),
        "login": f"{r.device.user}@contoso.com",
        "proto": "HTTPS",
        "eurl": f"{r.host}/",
        "action": "Blocked" if r.denied else "Allowed",
        "reqsize": str(r.up),
        "respsize": str(r.down),
        "cip": r.device.ip,
        "sip": _ip(r.host),
        "reqmethod": "POST" if r.up > r.down else "GET",
        "respcode": "403" if r.denied else "200",
        "devicehostname": r.device.hostname,
    }
    return "\t".join(f"{key}={value}" for key, value in fields.items())


@dataclass(frozen=True, slots=True)
class Written:
    """What `write_sample` wrote: the files and how many lines each holds."""

    files: dict[Path, int]


def write_sample(
    catalog: Catalog,
    out: Path,
    *,
    days: int,
    device_count: int,
    now: dt.datetime,
    seed: int = 1,
) -> Written:
    """Write the sample logs into the directory `out` (made if missing; the files are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    squid_path, zscaler_path = out / SQUID_FILE, out / ZSCALER_FILE
    counts = {squid_path: 0, zscaler_path: 0}
    with squid_path.open("w") as squid, zscaler_path.open("w") as zscaler:
        for r in requests(catalog, days=days, device_count=device_count, now=now, seed=seed):
            if r.device.remote:
                zscaler.write(zscaler_line(r) + "\n")
                counts[zscaler_path] += 1
            else:
                squid.write(squid_line(r) + "\n")
                counts[squid_path] += 1
    return Written(counts)
