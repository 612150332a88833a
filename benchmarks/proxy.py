"""CONNECT set-ups per second, tunnel throughput and memory of the shim's proxy against tinyproxy.

The shim's proxy holds ``--count`` blocked domains (real blocklist names plus synthetic
subdomains, as in the DNS benchmarks) and checks every CONNECT target and ClientHello SNI
against them; tinyproxy (Debian's ``tinyproxy-bin``, a C forward proxy) checks nothing. Both
relay to the same local origin (a separate process), one after the other:

(a) set-ups: ``--clients`` concurrent clients loop on CONNECT 127.0.0.1:port, send a real TLS
    ClientHello (SNI ``allowed.example``, not blocked), read a 1 KiB answer to EOF, close;
(b) throughput: one tunnel through which the origin sends ``--megabytes`` MiB;
(c) denials (shim only): CONNECT to a blocked name answered 403;
(d) plain HTTP: ``--clients`` concurrent clients loop on ``GET http://127.0.0.1:port/`` (a
    1 KiB answer with Content-Length), one request per connection, then on kept-alive
    connections (a client reconnects when the proxy closes): every request is decided, so
    keep-alive saves the client-side connection set-up only (the shim opens one origin
    connection per request).

It also times the SNI reader alone, and prints resident memory (``ps -o rss=``) after loading and
after the runs. "direct" is the same client against the origin without a proxy: the ceiling of
this load generator on this machine. With two cores, client, origin and proxy share the machine;
that is the same for both peers, so the ratio is fair even where the absolute figures are not.

    .venv/bin/python benchmarks/proxy.py --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _unbound import load_domains, rss_kib

SMALL_REPLY = 1024
ALLOWED_SNI = "allowed.example"


def serve_shim(domains_file: Path, port: int) -> None:
    """The shim's side: load the domains into a matcher and serve the proxy (a subprocess)."""
    from enforcer.decide.matcher import Matcher
    from enforcer.models import Action, NetworkEvent
    from enforcer.shim.proxy.bypass import BypassStore
    from enforcer.shim.proxy.frontend import ProxyFrontEnd, start_proxy

    matcher = Matcher()
    with domains_file.open() as lines:
        matcher.add_domains((line.rstrip("\n") for line in lines), Action.BLOCK, "benchmark")
    events: list[NetworkEvent] = []

    def keep_last(event: NetworkEvent) -> None:
        events[:] = [event]  # the event is built and handed over, as with a real reporter

    frontend = ProxyFrontEnd(
        matcher,
        bypasses=BypassStore(),
        on_event=keep_last,
        notifier=lambda title, body: None,
        user="benchmark",
    )

    async def run() -> None:
        server = await start_proxy(frontend, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(run())


def serve_origin(small_port: int, big_port: int, megabytes: int, http_port: int) -> None:
    """The origin (a subprocess): read the first bytes, answer 1 KiB or `megabytes` MiB, close;
    on `http_port`, answer every HTTP request of a connection with 1 KiB (keep-alive)."""
    block = b"x" * (1 << 20)
    page = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SMALL_REPLY + b"z" * SMALL_REPLY

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(page)
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        writer.close()

    async def small(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"y" * SMALL_REPLY)
        await writer.drain()
        writer.close()

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        for _ in range(megabytes):
            writer.write(block)
            await writer.drain()
        writer.close()

    async def run() -> None:
        servers = [
            await asyncio.start_server(small, "127.0.0.1", small_port, backlog=1024),
            await asyncio.start_server(big, "127.0.0.1", big_port),
            await asyncio.start_server(http, "127.0.0.1", http_port, backlog=1024),
        ]
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.monotonic()
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def client_hello(name: str) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


async def tunnel(proxy_port: int | None, target: str, hello: bytes) -> int:
    """One connection (through the proxy when a port is given); bytes received after set-up."""
    port = proxy_port if proxy_port is not None else int(target.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if proxy_port is not None:
            writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            if status != b"200":
                return -int(status)
        writer.write(hello)
        received = 0
        while data := await reader.read(1 << 20):
            received += len(data)
        return received
    finally:
        writer.close()


async def setups_per_second(
    proxy_port: int | None, target: str, hello: bytes, seconds: float, clients: int, expect: int
) -> float:
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while loop.time() < stop:
            got = await tunnel(proxy_port, target, hello)
            if got != expect:
                raise SystemExit(f"unexpected answer {got} (expected {expect}) for {target}")
            done += 1

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return done / (loop.time() - started)


async def throughput(proxy_port: int | None, target: str, hello: bytes, megabytes: int) -> float:
    started = time.perf_counter()
    got = await tunnel(proxy_port, target, hello)
    if got != megabytes << 20:
        raise SystemExit(f"throughput run received {got} bytes")
    return megabytes / (time.perf_counter() - started)


async def http_requests_per_second(
    proxy_port: int | None, origin_port: int, seconds: float, clients: int, keep_alive: bool
) -> float:
    """Plain-HTTP GETs per second (absolute form through a proxy, origin form directly)."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    done = 0
    authority = f"127.0.0.1:{origin_port}"
    target = f"http://{authority}/" if proxy_port is not None else "/"
    close = "" if keep_alive else "Connection: close\r\n"
    request = f"GET {target} HTTP/1.1\r\nHost: {authority}\r\n{close}\r\n".encode()

    async def worker() -> None:
        nonlocal done
        while loop.time() < stop:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", proxy_port if proxy_port is not None else origin_port
            )
            try:
                while loop.time() < stop:
                    writer.write(request)
                    try:
                        head = (await reader.readuntil(b"\r\n\r\n")).lower()
                    except (asyncio.IncompleteReadError, ConnectionError):
                        if reader.at_eof() and keep_alive:
                            break  # closed without saying so (tinyproxy): reconnect
                        raise
                    if not head.startswith(b"http/1.1 200"):
                        raise SystemExit(f"unexpected answer {head[:40]!r}")
                    length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                    await reader.readexactly(length)
                    done += 1
                    if not keep_alive or b"connection: close" in head:
                        break
            finally:
                writer.close()

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return done / (loop.time() - started)


def sni_parses_per_second(hello: bytes, seconds: float = 2.0) -> float:
    from enforcer.shim.proxy.tls import server_name

    count = 0
    stop = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop:
        for _ in range(1000):
            server_name(hello)
        count += 1000
    return count / (time.perf_counter() - started)


def start_tinyproxy(work: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("tinyproxy")
    if binary is None:
        print("tinyproxy is not installed (apt-get install tinyproxy-bin): no peer figures")
        return None
    port = free_port()
    conf = work / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 1024\nAllow 127.0.0.1\n"
        "LogLevel Critical\nDisableViaHeader Yes\n"
    )
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(port, time.monotonic() + 30)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--origin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port2", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port3", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_shim(args.serve, args.port)
        return
    if args.origin:
        serve_origin(args.port, args.port2, args.megabytes, args.port3)
        return

    domains = load_domains(args.count)
    hello = client_hello(ALLOWED_SNI)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        work = Path(tmp)
        domains_file = work / "domains.txt"
        domains_file.write_text("\n".join(domains) + "\n")
        small, big, shim_port, plain = free_port(), free_port(), free_port(), free_port()
        try:
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--origin", "--port", str(small),
                     "--port2", str(big), "--port3", str(plain),
                     "--megabytes", str(args.megabytes)]
                )
            )  # fmt: skip
            started = time.monotonic()
            shim = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(domains_file), "--port", str(shim_port)]
            )
            procs.append(shim)
            shim_start = wait_listening(shim_port, started + 600) - started
            wait_listening(small, time.monotonic() + 30)
            peer = start_tinyproxy(work)
            if peer is not None:
                procs.append(peer[0])
            peers: dict[str, int | None] = {"direct": None, "shim": shim_port}
            if peer is not None:
                peers["tinyproxy"] = peer[1]
            rss = {"shim": rss_kib(shim.pid)}
            if peer is not None:
                rss["tinyproxy"] = rss_kib(peer[0].pid)

            results: dict[str, dict[str, float]] = {}
            for name, port in peers.items():
                print(f"{name}: set-ups for {args.seconds:g} s, then {args.megabytes} MiB")
                rate = asyncio.run(
                    setups_per_second(
                        port, f"127.0.0.1:{small}", hello, args.seconds, args.clients, SMALL_REPLY
                    )
                )
                mbps = asyncio.run(throughput(port, f"127.0.0.1:{big}", hello, args.megabytes))
                results[name] = {"setups": rate, "mbps": mbps}
                for key, kept in (("http", False), ("http_kept", True)):
                    results[name][key] = asyncio.run(
                        http_requests_per_second(port, plain, args.seconds, args.clients, kept)
                    )
            denials = asyncio.run(
                setups_per_second(
                    shim_port, f"www.{domains[len(domains) // 2]}:443", hello,
                    args.seconds, args.clients, -403,
                )
            )  # fmt: skip
            rss_after = {"shim": rss_kib(shim.pid)}
            if peer is not None:
                rss_after["tinyproxy"] = rss_kib(peer[0].pid)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)

    sni = sni_parses_per_second(hello)
    print()
    print(f"indicators: {len(domains):,}; {args.clients} concurrent clients, {args.seconds:g} s")
    header = f"{'':30}" + "".join(f"{name:>12}" for name in results)
    print(header + (f"{'shim/tinyproxy':>16}" if "tinyproxy" in results else ""))
    for key, label in (
        ("setups", "CONNECT set-ups per second"),
        ("mbps", "tunnel MiB/s"),
        ("http", "HTTP requests/s, 1 per conn."),
        ("http_kept", "HTTP requests/s, kept alive"),
    ):
        row = f"{label:30}" + "".join(f"{r[key]:>12,.0f}" for r in results.values())
        if "tinyproxy" in results:
            row += f"{results['shim'][key] / results['tinyproxy'][key]:>15.2f}x"
        print(row)
    for label, table in (("RSS after load (MiB)", rss), ("RSS after runs (MiB)", rss_after)):
        row = f"{label:30}{'':>12}" + "".join(f"{kib / 1024:>12,.1f}" for kib in table.values())
        if "tinyproxy" in table:
            row += f"{table['shim'] / table['tinyproxy']:>15.2f}x"
        print(row)
    print(f"{'shim: denials (403) per second':30}{denials:>24,.0f}")
    print(f"{'shim: start-up to listening (s)':30}{shim_start:>24.2f}")
    print(f"{'SNI reads per second (1 core)':30}{sni:>24,.0f}   ({len(hello)}-byte ClientHello)")


if __name__ == "__main__":
    main()
