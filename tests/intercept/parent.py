"""A corporate proxy for the interception tests, run inside the test's network namespace.

Usage: ``python parent.py HOST PORT LOG``. Answers ``CONNECT host:port`` with a tunnel and
absolute-form requests by forwarding them (in origin form) to the host, appending each request
head's first line and its ``Proxy-Authorization`` to LOG as a JSON line. Requests without
``Proxy-Authorization: Basic dTpw`` (``u:p``) get a 407.

It stands for a machine elsewhere: its own sockets carry the shim's mark, as traffic of another
host would not meet the shim's table. Prints ``ready`` once listening. Standard library only.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

MARK = 0x2A
GOOD = "Basic dTpw"


async def open_marked(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return await asyncio.open_connection(sock=sock)


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        pass


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line = head.split("\r\n", 1)[0]
        auth = next(
            (h.split(":", 1)[1].strip() for h in head.split("\r\n")
             if h.lower().startswith("proxy-authorization:")),
            "",
        )  # fmt: skip
        with open(sys.argv[3], "a", encoding="utf-8") as log:
            log.write(json.dumps({"line": line, "auth": auth}) + "\n")
        if auth != GOOD:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        method, target, _ = line.split(" ")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await open_marked(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            authority, _, path = target.removeprefix("http://").partition("/")
            host, _, port = authority.partition(":")
            up_reader, up_writer = await open_marked(host, int(port or 80))
            up_writer.write(head.replace(target, "/" + path, 1).encode("latin-1"))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
