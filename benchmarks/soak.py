"""Soak: simulated devices long-polling and uploading events to one `enforcer serve` for a while.

A bounded-time load test on 127.0.0.1 (issue 7): N devices, each with one keep-alive connection
that long-polls ``/api/v1/sync`` and a second one that posts a batch of events every few
seconds, while a changer adds a manual indicator to the store every few seconds (so long-polls
are answered with real deltas). It reports:

* errors: any exception or unexpected status, on any request (must be 0);
* events lost: accepted events minus events stored (must be 0), and duplicates;
* the server's resident memory after warm-up, every 10 s, and at the end (growth must stay
  flat: a leak shows as a steady climb over the samples, not as one step at start);
* p50/p99 latency of event uploads, of immediate sync answers, and of delivery (from the
  store commit of a change to each device's answer carrying it).

With ``--shims N`` (default 1) it also runs N real ``enforcer shim`` processes against the same
server, each answering a steady DNS load (``--dns-qps``: names that the server blocks, each
answer an event, and allowed names forwarded to a local fake upstream), long-polling for the
changer's indicators and reporting its events through its journal and spool. For each shim it
reports its RSS samples, the events it says it sent, kept or lost (its ``shim.stopped`` log)
and the events the server stored for its device (must be equal: exactly once).

Memory is called flat when the highest RSS of the last third of the samples exceeds the
highest of the middle third by at most 2 % + 1 MiB (the first third is warm-up: caches and
connections filling). It prints the verdict per process.

    python benchmarks/soak.py                                  # 200 devices, 1 shim, 180 s
    python benchmarks/soak.py --devices 500 --seconds 600 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/soak.py --devices 200 --shims 2 --seconds 3600   # the one-hour soak

It exits 1 when there was an error, a lost event or memory that did not stay flat, so it can
gate a release pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import httpx
from _store import fresh_store
from _unbound import FakeUpstream
from sqlalchemy import Engine, text

from enforcer.models import Action, Indicator
from enforcer.store.devices import enroll_device
from enforcer.store.events import count_events
from enforcer.store.manual import add_manual

ADMIN = "soak-admin-token-0123456789abcdef"
SECRET = "soak-enrol-secret-0123456789abcdef"


@dataclass
class Figures:
    """What the devices measured."""

    upload_ms: list[float] = field(default_factory=list)
    sync_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    events_accepted: int = 0
    duplicates: int = 0
    long_polls: int = 0
    retries: int = 0
    """Batches resent after a connection error (see `post_batch`)."""
    commits: dict[int, float] = field(default_factory=dict)
    """revision -> monotonic time of its store commit (written by the changer)."""

    def error(self, what: str) -> None:
        self.errors.append(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def event(device: str, i: int) -> dict[str, object]:
    return {"time": dt.datetime.now(dt.UTC).isoformat(), "hostname": device, "user": "soak",
            "localIp": "10.0.0.5", "domain": f"site{i % 500}.example", "destIp": "192.0.2.1",
            "destPort": 443, "bytesUp": 100 + i, "bytesDown": 1000 + i, "action": "allowed",
            "source": "dns"}  # fmt: skip


async def syncer(base: str, token: str, stop: asyncio.Event, fig: Figures, wait: int) -> None:
    """One device's sync loop: a snapshot, then long-polls, recording delivery times."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=wait + 30) as client:
        started = time.perf_counter()
        response = await client.get("/api/v1/sync")
        fig.sync_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            fig.error(f"snapshot {response.status_code}")
            return
        revision = int(response.json()["revision"])
        while not stop.is_set():
            try:
                response = await client.get(
                    "/api/v1/sync", params={"since": revision, "wait": wait}
                )
            except httpx.HTTPError as exc:
                fig.error(f"sync {exc!r}")
                await asyncio.sleep(1)
                continue
            fig.long_polls += 1
            if response.status_code == 304:
                continue
            if response.status_code != 200:
                fig.error(f"sync {response.status_code} {response.text[:200]}")
                await asyncio.sleep(1)
                continue
            now = time.monotonic()
            new = int(response.json()["revision"])
            for rev in range(revision + 1, new + 1):
                if rev in fig.commits:
                    fig.delivery_ms.append((now - fig.commits[rev]) * 1000)
            revision = new


async def uploader(
    base: str, device: str, token: str, stop: asyncio.Event, fig: Figures, args: argparse.Namespace
) -> None:
    """One device's event uploads: a batch every `batch_interval` s (jittered), unique ids."""
    headers = {"Authorization": f"Bearer {token}"}
    batch = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        await asyncio.sleep(random.uniform(0, args.batch_interval))
        while not stop.is_set():
            batch += 1
            body = {"batchId": f"{device}-{batch}", "deviceId": device,
                    "events": [event(device, batch * 1000 + i) for i in range(args.batch_events)]}  # fmt: skip
            started = time.perf_counter()
            try:
                response = await post_batch(client, body, fig)
            except httpx.HTTPError as exc:
                fig.error(f"events {exc!r}")
                continue
            fig.upload_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                fig.error(f"events {response.status_code} {response.text[:200]}")
            elif response.json()["duplicate"]:
                fig.duplicates += 1
            else:
                fig.events_accepted += int(response.json()["count"])
            await asyncio.sleep(args.batch_interval * random.uniform(0.8, 1.2))


async def post_batch(
    client: httpx.AsyncClient, body: dict[str, object], fig: Figures
) -> httpx.Response:
    """POST a batch; resend it (same batchId, as the shim does) after a connection error.

    uvicorn closes a keep-alive connection idle for 5 s; a device posting every ~5 s sometimes
    sends on a connection the server is closing and reads nothing back. The shim resends the
    batch with the same id and the server stores it once: the same here, counted as a retry
    (an error only when three attempts fail).
    """
    for attempt in range(3):
        try:
            return await client.post("/api/v1/events", json=body)
        except httpx.TransportError:
            if attempt == 2:
                raise
            fig.retries += 1
    raise AssertionError("unreachable")


async def changer(engine: Engine, stop: asyncio.Event, fig: Figures, interval: float) -> int:
    """A manual indicator every `interval` s; records each revision's commit time."""
    changes = 0
    while not stop.is_set():
        await asyncio.sleep(interval)
        indicator = Indicator(f"soak-{changes}.example", Action.BLOCK, title="soak")
        _, revision = await asyncio.to_thread(add_manual, engine, indicator, actor="soak")
        fig.commits[revision] = time.monotonic()
        changes += 1
    return changes


BLOCKED = 200
"""Names the server blocks before the soak starts (``soak-blocked-N.example``)."""


@dataclass
class Shim:
    """One `enforcer shim` process under DNS load, and what it answered."""

    proc: subprocess.Popen[bytes]
    state: Path
    log: Path
    dns_port: int
    answers: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return (self.state / "device-id").read_text().strip()

    def stopped(self) -> dict[str, object]:
        """The shim's own account of its events, from its ``shim.stopped`` log line."""
        for line in self.log.read_text(errors="replace").splitlines():
            if '"shim.stopped"' in line:
                return dict(json.loads(line))
        return {}


def start_shim(base: str, work: Path, n: int, upstream: int) -> Shim:
    state, log = work / f"shim-{n}", work / f"shim-{n}.log"
    dns_port, proxy_port = free_port(), free_port()
    argv = [sys.executable, "-m", "enforcer", "shim", "--server", base, "--enroll-secret", SECRET,
            "--state-dir", str(state), "--dns-listen", f"127.0.0.1:{dns_port}",
            "--proxy-listen", f"127.0.0.1:{proxy_port}", "--upstream", f"127.0.0.1:{upstream}",
            "--sync-wait", "20"]  # fmt: skip
    env = {**os.environ, "ENFORCER_LOG_FORMAT": "json"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Shim(proc, state, log, dns_port)


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, shim: Shim, waiting: dict[int, str]) -> None:
        self.shim, self.waiting = shim, waiting

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        name = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if name is not None:
            rcode = data[3] & 0x0F
            self.shim.answers[f"{name} {rcode}"] = self.shim.answers.get(f"{name} {rcode}", 0) + 1


async def dns_load(shim: Shim, stop: asyncio.Event, qps: float) -> None:
    """`qps` queries a second: a blocked name, then an allowed one, in turn."""
    loop = asyncio.get_running_loop()
    waiting: dict[int, str] = {}
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Answers(shim, waiting), remote_addr=("127.0.0.1", shim.dns_port)
    )
    i = 0
    try:
        while not stop.is_set():
            i += 1
            qid = i % 65536
            if qid in waiting:
                shim.timeouts += 1
            name = f"soak-blocked-{i % BLOCKED}.example" if i % 2 else f"www{i % 500}.allowed.test"
            query = dns.message.make_query(name, "A")
            query.id = qid
            waiting[qid] = name
            transport.sendto(query.to_wire())
            await asyncio.sleep(1 / qps)
        await asyncio.sleep(1)
    finally:
        transport.close()


def _device_events(engine: Engine, device_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM network_event WHERE device_id = :d"), {"d": device_id}
            ).scalar_one()
        )


def flat(samples: list[tuple[float, float]]) -> bool:
    """The rule of the module docstring: the last third's peak within 2 % + 1 MiB of the
    middle third's."""
    third = max(1, len(samples) // 3)
    middle = samples[third : 2 * third] or samples
    last = samples[2 * third :] or samples
    peak = max(rss for _, rss in middle)
    return max(rss for _, rss in last) <= peak * 1.02 + 1


async def soak(args: argparse.Namespace, url: str, engine: Engine, work: Path) -> int:
    tokens = {
        f"soak-{i:04}": enroll_device(
            engine,
            device_id=f"soak-{i:04}",
            hostname=f"soak-{i:04}",
            os="Linux",
            user="soak",
            local_ips=[],
            groups=[],
        )[1]
        for i in range(args.devices)
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    env = {**os.environ, "ENFORCER_DATABASE_URL": url, "ENFORCER_ADMIN_TOKEN": ADMIN,
           "ENFORCER_ENROLL_SECRET": SECRET, "ENFORCER_LOG_FORMAT": "json"}  # fmt: skip
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "enforcer", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    fig = Figures()
    for i in range(BLOCKED):
        add_manual(engine, Indicator(f"soak-blocked-{i}.example", Action.BLOCK), actor="soak")
    upstream = FakeUpstream()
    shims: list[Shim] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            await asyncio.sleep(0.1)
        shims = [start_shim(base, work, n, upstream.port) for n in range(args.shims)]
        for shim in shims:
            await asyncio.to_thread(wait_answering, shim)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(syncer(base, t, stop, fig, args.wait)) for t in tokens.values()
        ]
        tasks += [asyncio.create_task(dns_load(shim, stop, args.dns_qps)) for shim in shims]
        tasks += [
            asyncio.create_task(uploader(base, d, t, stop, fig, args)) for d, t in tokens.items()
        ]
        await asyncio.sleep(min(10.0, args.seconds / 6))  # warm-up: snapshots, first batches
        samples = [(0.0, rss_mib(server.pid))]
        for shim in shims:
            shim.rss.append((0.0, rss_mib(shim.proc.pid)))
        print(f"warm: {args.devices} devices, {len(shims)} shims, server RSS "
              f"{samples[0][1]:.0f} MiB", flush=True)  # fmt: skip
        change_task = asyncio.create_task(changer(engine, stop, fig, args.change_interval))
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.seconds:
            await asyncio.sleep(min(10.0, args.seconds - elapsed))
            samples.append((time.monotonic() - started, rss_mib(server.pid)))
            for shim in shims:
                shim.rss.append((samples[-1][0], rss_mib(shim.proc.pid)))
            shim_rss = " ".join(f"{shim.rss[-1][1]:.0f}" for shim in shims)
            print(f"  {samples[-1][0]:5.0f} s  RSS {samples[-1][1]:.0f} MiB (shims {shim_rss})  "
                  f"uploads {len(fig.upload_ms):,}  long-polls {fig.long_polls:,}  "
                  f"DNS answers {sum(sum(s.answers.values()) for s in shims):,}  "
                  f"errors {len(fig.errors)}", flush=True)  # fmt: skip
        stop.set()
        changes = await change_task
        # Long-polls end within `wait` s; uploads within one request.
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), args.wait + 35)
        for shim in shims:  # each sends what it holds, then reports its own account
            shim.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(shim.proc.wait, 60)
        await asyncio.sleep(0.5)
        stored = await asyncio.to_thread(lambda: _count(engine))
    finally:
        for shim in shims:
            if shim.proc.poll() is None:
                shim.proc.kill()
                shim.proc.wait()
        upstream.close()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    server_errors = [
        line for line in log_path.read_text().splitlines() if '"level": "error"' in line
    ]
    shim_results: list[dict[str, Any]] = []
    for shim in shims:
        account = shim.stopped()
        stored_for = _device_events(engine, shim.device_id)
        stored -= stored_for
        blocked = sum(n for key, n in shim.answers.items() if key.endswith(" 3"))
        shim_results.append({
            "dns_answers": sum(shim.answers.values()), "blocked_answers": blocked,
            "unanswered": shim.timeouts, "events_sent": account.get("sent"),
            "events_pending": account.get("pending"), "events_lost": account.get("lost"),
            "events_stored": stored_for, "exit_code": shim.proc.returncode,
            "rss_mib_start": round(shim.rss[0][1], 1), "rss_mib_end": round(shim.rss[-1][1], 1),
            "rss_samples": [round(rss, 1) for _, rss in shim.rss], "memory_flat": flat(shim.rss),
        })  # fmt: skip
    shim_failed = [
        r for r in shim_results
        if r["events_stored"] != r["events_sent"] or r["events_lost"] or r["events_pending"]
        or r["exit_code"] != 0 or not r["memory_flat"]
        or r["events_stored"] < r["blocked_answers"]
    ]  # fmt: skip
    lost = fig.events_accepted - stored
    half = len(samples) // 2
    first_half = max(rss for _, rss in samples[: half or 1])
    second_half = max(rss for _, rss in samples[half:])
    result = {
        "devices": args.devices,
        "seconds": args.seconds,
        "database": url.split(":", 1)[0],
        "errors": len(fig.errors) + len(server_errors),
        "error_samples": (fig.errors + server_errors)[:5],
        "events_accepted": fig.events_accepted,
        "events_stored": stored,
        "events_lost": lost,
        "duplicate_batches": fig.duplicates,
        "upload_retries": fig.retries,
        "uploads": len(fig.upload_ms),
        "long_polls": fig.long_polls,
        "changes": changes,
        "deliveries": len(fig.delivery_ms),
        "upload_ms_p50": round(percentile(fig.upload_ms, 50), 1),
        "upload_ms_p99": round(percentile(fig.upload_ms, 99), 1),
        "snapshot_ms_p99": round(percentile(fig.sync_ms, 99), 1),
        "delivery_ms_p50": round(percentile(fig.delivery_ms, 50), 1),
        "delivery_ms_p99": round(percentile(fig.delivery_ms, 99), 1),
        "rss_mib_start": round(samples[0][1], 1),
        "rss_mib_end": round(samples[-1][1], 1),
        "rss_mib_max_first_half": round(first_half, 1),
        "rss_mib_max_second_half": round(second_half, 1),
        "rss_mib_samples": [round(rss, 1) for _, rss in samples],
        "memory_flat": flat(samples),
        "shims": shim_results,
    }
    print(json.dumps(result, indent=1))
    print(f"server memory flat: {'yes' if result['memory_flat'] else 'NO'}; " + "; ".join(
        f"shim {n} memory flat: {'yes' if r['memory_flat'] else 'NO'}, events sent "
        f"{r['events_sent']} stored {r['events_stored']} lost {r['events_lost']}"
        for n, r in enumerate(shim_results)))  # fmt: skip
    return 1 if result["errors"] or lost or not result["memory_flat"] or shim_failed else 0


def wait_answering(shim: Shim, within: float = 60.0) -> None:
    """Wait until the shim answers DNS (its cache and first sync happen before)."""
    import dns.query

    query = dns.message.make_query("soak-blocked-0.example", "A")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if shim.proc.poll() is not None:
            raise SystemExit(f"the shim exited: {shim.log.read_text()[-2000:]}")
        try:
            if dns.query.udp(query, "127.0.0.1", port=shim.dns_port, timeout=0.5).rcode() == 3:
                return
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit("the shim did not block the server's names in time")


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return count_events(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=180.0, help="measured time after warm-up")
    parser.add_argument("--batch-events", type=int, default=50)
    parser.add_argument("--batch-interval", type=float, default=5.0, help="seconds per device")
    parser.add_argument("--change-interval", type=float, default=5.0)
    parser.add_argument("--wait", type=int, default=20, help="long-poll wait (s)")
    parser.add_argument("--database-url", default="", help="default: a SQLite file")
    parser.add_argument("--shims", type=int, default=1, help="real enforcer shim processes")
    parser.add_argument("--dns-qps", type=float, default=100.0, help="DNS queries/s per shim")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_store(args.database_url, Path(tmp)) as (
            url,
            engine,
        ),
    ):
        code = asyncio.run(soak(args, url, engine, Path(tmp)))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
