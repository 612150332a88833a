"""Sync at scale: N devices long-polling one `enforcer serve` process, time from apply to delivery.

Enrols N devices straight into the store, starts `enforcer serve` on a free port of 127.0.0.1,
and from this one process opens one keep-alive connection per device (plain asyncio streams: a
few KiB per simulated device). Each device takes its snapshot, then long-polls
(`wait=30`). When all N are waiting (the server's `enforcer_sync_clients_waiting` gauge says so), a
manual indicator is added to the store and every device's time from that commit to its response
is recorded. Three rounds. Prints p50/p99 delivery time, how many devices got the change, and
the server's resident memory.

    python benchmarks/sync_load.py                # 5,000 devices, SQLite
    python benchmarks/sync_load.py --devices 1000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from _store import fresh_store

from enforcer.models import Action, Indicator
from enforcer.store.devices import enroll_device
from enforcer.store.manual import add_manual

ADMIN = "bench-admin-token-0123456789abcdef"
SECRET = "bench-enrol-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, token: str
) -> tuple[int, bytes]:
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
        return status, body
    return status, await reader.readexactly(length) if length else b""


async def device(
    port: int,
    token: str,
    rounds: int,
    got: list[list[float]],
    ready: asyncio.Event,
    connected: asyncio.Semaphore,
) -> None:
    async with connected:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _, body = await request(reader, writer, "/api/v1/sync", token)
    revision = json.loads(body)["revision"]
    for r in range(rounds):
        while True:
            status, body = await request(
                reader, writer, f"/api/v1/sync?since={revision}&wait=60", token
            )
            if status == 200 and json.loads(body)["revision"] > revision:
                got[r].append(time.monotonic())
                revision = json.loads(body)["revision"]
                break
    writer.close()


def waiting(port: int) -> int:
    """The server's count of held long-polls (0 while it is too busy to answer)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            text = response.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("enforcer_sync_clients_waiting "):
            return int(float(line.split()[1]))
    return 0


def rss_mib(pid: int) -> float:
    return (
        int(
            subprocess.run(
                ["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True
            ).stdout
        )
        / 1024
    )


async def run(args: argparse.Namespace, url: str, tokens: list[str], engine) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**os.environ, "ENFORCER_DATABASE_URL": url, "ENFORCER_ADMIN_TOKEN": ADMIN, "ENFORCER_ENROLL_SECRET": SECRET,
           "ENFORCER_LOG_LEVEL": "warning"}  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "enforcer", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                await asyncio.sleep(0.1)
        idle_rss = rss_mib(server.pid)
        got: list[list[float]] = [[] for _ in range(args.rounds)]
        ready = asyncio.Event()
        connected = asyncio.Semaphore(200)  # open connections in waves below the listen backlog
        tasks = [
            asyncio.create_task(device(port, t, args.rounds, got, ready, connected)) for t in tokens
        ]
        started = time.monotonic()
        results = []
        for r in range(args.rounds):
            while await asyncio.to_thread(waiting, port) < len(tokens):
                if time.monotonic() - started > 300:
                    raise SystemExit(
                        f"only {await asyncio.to_thread(waiting, port)} devices waiting after 300 s"
                    )
                await asyncio.sleep(0.5)
            if r == 0:
                print(
                    f"  {len(tokens):,} devices long-polling after {time.monotonic() - started:.1f} s; server RSS {rss_mib(server.pid):.0f} MiB"
                )
            await asyncio.to_thread(
                add_manual,
                engine,
                Indicator(f"round{r}-{uuid.uuid4().hex[:6]}.example", Action.BLOCK),
                actor="bench",
            )
            applied = time.monotonic()
            while len(got[r]) < len(tokens) and time.monotonic() - applied < 60:
                await asyncio.sleep(0.05)
            delays = sorted(t - applied for t in got[r])
            p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else float("nan")
            results.append(
                (len(delays), statistics.median(delays) if delays else float("nan"), p99)
            )
            print(f"  round {r + 1}: {len(delays):,}/{len(tokens):,} devices got the change; "
                  f"p50 {results[-1][1]:.2f} s, p99 {p99:.2f} s, max {delays[-1] if delays else float('nan'):.2f} s")  # fmt: skip
        print(
            f"  server RSS: idle {idle_rss:.0f} MiB, peak holding {len(tokens):,} long-polls {rss_mib(server.pid):.0f} MiB"
        )
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_store(args.database_url, Path(tmp)) as (url, engine),
    ):
        start = time.monotonic()
        tokens = [enroll_device(engine, device_id=f"dev-{i:05d}", hostname=f"pc{i}", os="Linux", user="u",
                                local_ips=["10.0.0.1"], groups=[])[1] for i in range(args.devices)]  # fmt: skip
        print(
            f"sync load: {args.devices:,} devices enrolled in {time.monotonic() - start:.1f} s, store={url.split(':')[0]}"
        )
        asyncio.run(run(args, url, tokens, engine))


if __name__ == "__main__":
    main()
