"""A large change to many devices: N devices long-polling one `enforcer serve` process receive a
change of M indicators (more than a delta carries, so each needs the whole set).

Applies a small policy set, enrols N devices straight into the store, starts `enforcer serve` on
a free port of 127.0.0.1 and, from this one process, opens one keep-alive connection per device
(plain asyncio streams). Each device takes its snapshot, then long-polls (`wait=60`). When all N
are waiting (the server's `enforcer_sync_clients_waiting` says so), the policy set grows by M
indicators in one apply (real blocklist names, `_unbound.load_domains`), and every device's time
from that commit to the last byte of its answer is recorded.

Every answer must be a 200 with a Content-Length equal to the bytes received. The first one is
decompressed, parsed and compared with the store's set (revision, snapshot, every indicator);
every other one must be the same bytes. Prints delivery times, bytes, how many renderings the
server made (`enforcer_sync_renders_total`) and the server's resident memory.

    python benchmarks/sync_fanout.py                          # 1,000 devices, 100,000 indicators
    python benchmarks/sync_fanout.py --devices 300 --indicators 65139 --identity   # no gzip
    python benchmarks/sync_fanout.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _store import fresh_store
from _unbound import free_port, load_domains
from sqlalchemy import Engine

from enforcer.decide.expand import DesiredState
from enforcer.models import Action, Indicator
from enforcer.pipeline.run import apply, make_plan
from enforcer.store.devices import enroll_device

ADMIN = "bench-admin-token-0123456789abcdef"
SECRET = "bench-enrol-secret-0123456789abcdef"
SEED = 100


def apply_set(engine: Engine, names: list[str]) -> int:
    indicators = [
        Indicator(value=name, action=Action.BLOCK, app_id="bulk", title=f"Blocked: {name}")
        for name in names
    ]
    desired = DesiredState(indicators={ind.key: ind for ind in indicators})
    return apply(engine, make_plan(engine, desired), actor="bench")


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, token: str, gz: bool
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a kept-alive connection; the answer must carry its Content-Length."""
    encoding = "gzip" if gz else "identity"
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Accept-Encoding: {encoding}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    if status == 304:
        return status, b"", headers
    if "content-length" not in headers:
        raise RuntimeError(f"an answer without Content-Length: {headers}")
    return status, await reader.readexactly(int(headers["content-length"])), headers


def decode(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    parsed: dict[str, Any] = json.loads(body)
    return parsed


class Device:
    def __init__(self, token: str) -> None:
        self.token = token
        self.done_at: float | None = None
        self.body = b""
        self.headers: dict[str, str] = {}
        self.error: str | None = None


async def device(
    port: int, dev: Device, gz: bool, connected: asyncio.Semaphore, rev: list[int]
) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        async with connected:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        _, body, headers = await get(reader, writer, "/api/v1/sync", dev.token, gz)
        first = decode(body, headers)
        since, epoch = first["revision"], first["epoch"]
        rev[0] = since
        while True:
            path = f"/api/v1/sync?since={since}&epoch={epoch}&wait=60"
            status, body, headers = await get(reader, writer, path, dev.token, gz)
            if status == 200:
                dev.done_at = time.monotonic()
                dev.body, dev.headers = body, headers
                break
            if status != 304:
                raise RuntimeError(f"status {status}: {body[:200]!r}")
    except Exception as exc:  # counted and printed: a device that got nothing is a failure
        dev.error = repr(exc)
    finally:
        if writer is not None:
            writer.close()


def metrics(port: int) -> dict[str, float]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("enforcer_sync_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return int(out.stdout or 0) / 1024


async def run(
    args: argparse.Namespace, url: str, engine: Engine, tokens: list[str], cache: Path
) -> bool:
    port = free_port()
    env = {**os.environ, "ENFORCER_DATABASE_URL": url, "ENFORCER_ADMIN_TOKEN": ADMIN,
           "ENFORCER_ENROLL_SECRET": SECRET, "ENFORCER_LOG_LEVEL": "warning",
           "ENFORCER_SYNC_CACHE_DIR": str(cache)}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                await asyncio.sleep(0.1)
        devices = [Device(t) for t in tokens]
        connected = asyncio.Semaphore(200)  # connect in waves below the listen backlog
        seen = [0]
        tasks = [
            asyncio.create_task(device(port, d, not args.identity, connected, seen))
            for d in devices
        ]
        started = time.monotonic()
        while metrics(port).get("enforcer_sync_clients_waiting", 0) < len(tokens):
            if time.monotonic() - started > 300 or all(t.done() for t in tasks):
                raise SystemExit("the devices did not all reach the long-poll")
            await asyncio.sleep(0.5)
        before = metrics(port)
        print(f"  {len(tokens):,} devices long-polling after {time.monotonic() - started:.1f} s; "
              f"server RSS {rss_mib(server.pid):.0f} MiB")  # fmt: skip
        names = load_domains(SEED + args.indicators)
        t0 = time.monotonic()
        revision = await asyncio.to_thread(apply_set, engine, names)
        applied = time.monotonic()
        cpu = (cpu_seconds(server.pid), own_cpu_seconds())
        print(f"  apply of {args.indicators:,} new indicators (revision {revision}) committed "
              f"in {applied - t0:.1f} s; devices timed from the commit")  # fmt: skip
        peak = 0.0
        while time.monotonic() - applied < args.timeout and not all(t.done() for t in tasks):
            peak = max(peak, rss_mib(server.pid))
            await asyncio.sleep(0.25)
        cpu = (cpu_seconds(server.pid) - cpu[0], own_cpu_seconds() - cpu[1])
        after = metrics(port)
        load = os.getloadavg()[0]
        print(f"  CPU from the commit to the last answer: server {cpu[0]:.1f} s, the devices' "
              f"process {cpu[1]:.1f} s; load average {load:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return report(args, devices, names, revision, applied, before, after, peak)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            print("  the server did not stop within 30 s of SIGTERM: killed")
            server.kill()


def report(
    args: argparse.Namespace,
    devices: list[Device],
    names: list[str],
    revision: int,
    applied: float,
    before: dict[str, float],
    after: dict[str, float],
    peak: float,
) -> bool:
    got = [d for d in devices if d.done_at is not None]
    failed = [d for d in devices if d.error is not None]
    reference = got[0] if got else None
    ok = reference is not None
    if reference is not None:
        body = decode(reference.body, reference.headers)
        values = {e["indicatorValue"] for e in body["upserts"]}
        # A snapshot lists the whole set; a delta (a change below the server's delta limit)
        # the new names, nothing removed.
        want = names if body["snapshot"] else names[SEED:]
        ok = (
            body["revision"] == revision
            and values == set(want)
            and len(body["upserts"]) == len(want)
            and not body["removes"]
        )
        kind = "snapshot" if body["snapshot"] else "delta"
        print(f"  reference answer: {kind} at revision {body['revision']}, "
              f"{len(body['upserts']):,} indicators, {'matches' if ok else 'DOES NOT match'} "
              "the store")  # fmt: skip
    same = sum(1 for d in got if reference is not None and d.body == reference.body)
    delays = sorted(d.done_at - applied for d in got if d.done_at is not None)
    p = (lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]) if delays else None
    print(f"  delivered: {len(got):,}/{len(devices):,} complete answers "
          f"({same:,} byte-identical to the verified one), {len(failed)} failed")  # fmt: skip
    for d in failed[:3]:
        print(f"    failure: {d.error}")
    if p is not None:
        print(f"  from the commit: first {delays[0]:.2f} s, p50 {statistics.median(delays):.2f} s, "
              f"p99 {p(0.99):.2f} s, "
              f"max {delays[-1]:.2f} s (goal: all within 30 s)")  # fmt: skip
    if reference is not None:
        size = len(reference.body)
        enc = reference.headers.get("content-encoding", "identity")
        json_size = len(gzip.decompress(reference.body)) if enc == "gzip" else size
        print(f"  answer: {size / 1e6:.1f} MB on the wire ({enc}; {json_size / 1e6:.1f} MB of "
              f"JSON); {size * len(got) / 1e9:.2f} GB sent in all")  # fmt: skip

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    snapshots = delta('enforcer_sync_renders_total{kind="snapshot"}')
    deltas = delta('enforcer_sync_renders_total{kind="delta"}')
    print(f"  renderings: {snapshots:.0f} snapshot, {deltas:.0f} delta; "
          f"server RSS peak {peak:.0f} MiB")  # fmt: skip
    within = bool(delays) and delays[-1] <= 30
    return ok and same == len(devices) and within


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--indicators", type=int, default=100_000)
    parser.add_argument("--identity", action="store_true", help="devices do not accept gzip")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_store(args.database_url, Path(tmp)) as (url, engine),
    ):
        load = os.getloadavg()
        print(f"sync fan-out: {args.devices:,} devices, a change of {args.indicators:,} "
              f"indicators, store={url.split(':')[0]}; load average before: "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        apply_set(engine, load_domains(SEED))
        tokens = [enroll_device(engine, device_id=f"dev-{i:05d}", hostname=f"pc{i}", os="Linux", user="u",
                                local_ips=["10.0.0.1"], groups=[])[1] for i in range(args.devices)]  # fmt: skip
        ok = asyncio.run(run(args, url, engine, tokens, Path(tmp) / "cache"))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
