"""The "internet" of the interception tests, run inside the test's network namespace.

Usage: ``python origin.py LOG CERT KEY``. Serves, each hit appended to LOG as a JSON line:

* a resolver on 10.99.0.53:53 (UDP and TCP): every name's A is 10.99.0.80, its AAAA
  fd00:99::80;
* a web server on 10.99.0.80 and fd00:99::80, ports 80 and 443 (TLS with CERT/KEY), that
  answers every request with the exact body it received (header ``X-Origin-Host``: the Host);
* listeners that only record what reaches them: UDP 443 (QUIC), TCP and UDP 853 (DoT/DoQ).

Prints ``ready`` once every socket is bound. Plain standard library plus dnspython, no Enforcer
code: it stands for servers on the other side of the network.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.message
import dns.rdatatype
import dns.rrset

RESOLVER = "10.99.0.53"
WEB = ("10.99.0.80", "fd00:99::80")
_lock = threading.Lock()


def hit(**fields: object) -> None:
    with _lock, open(sys.argv[1], "a", encoding="utf-8") as log:
        log.write(json.dumps(fields) + "\n")


def answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    hit(kind="dns", name=question.name.to_text().rstrip("."))
    if question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", WEB[0]))
    elif question.rdtype == dns.rdatatype.AAAA:
        response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "AAAA", WEB[1]))
    return response.to_wire()


def serve_dns_udp(sock: socket.socket) -> None:
    while True:
        wire, peer = sock.recvfrom(4096)
        sock.sendto(answer(wire), peer)


def serve_dns_tcp(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            (length,) = struct.unpack("!H", conn.recv(2))
            wire = b""
            while len(wire) < length:
                wire += conn.recv(length - len(wire))
            reply = answer(wire)
            conn.sendall(struct.pack("!H", len(reply)) + reply)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _echo(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hit(kind="http", host=self.headers.get("Host", ""), port=self.server.server_address[1])
        self.send_response(200)
        self.send_header("X-Origin-Host", self.headers.get("Host", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _echo

    def log_message(self, *args: object) -> None:
        pass


class Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def web(host: str, port: int, context: ssl.SSLContext | None) -> socketserver.BaseServer:
    server = (Server6 if ":" in host else ThreadingHTTPServer)((host, port), Echo)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def record_udp(sock: socket.socket, kind: str) -> None:
    while True:
        sock.recvfrom(4096)
        hit(kind=kind)


def record_tcp(sock: socket.socket, kind: str) -> None:
    while True:
        conn, _ = sock.accept()
        hit(kind=kind)
        conn.close()


def main() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    jobs = []
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((RESOLVER, 53))
    tcp = socket.create_server((RESOLVER, 53))
    jobs += [(serve_dns_udp, udp), (serve_dns_tcp, tcp)]
    for host in WEB:
        for port, tls in ((80, None), (443, context)):
            jobs.append((lambda s: s.serve_forever(), web(host, port, tls)))
    quic = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quic.bind((WEB[0], 443))
    doq = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    doq.bind((WEB[0], 853))
    dot = socket.create_server((WEB[0], 853))
    jobs += [
        (lambda s: record_udp(s, "udp443"), quic),
        (lambda s: record_udp(s, "udp853"), doq),
        (lambda s: record_tcp(s, "tcp853"), dot),
    ]
    for target, arg in jobs:
        threading.Thread(target=target, args=(arg,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
