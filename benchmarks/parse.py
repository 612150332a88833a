"""Parse-only throughput of every discovery log format, against a bare split loop.

Writes a synthetic ``--lines``-line log per format into a temporary directory (destination names
from the real blocklist in ../shared/data/blocklist-anudeep, drawn with a heavy-tailed popularity
as real traffic has; a few thousand client addresses; realistic field layouts), then times on one
core, reading each file through `open_lines`:

- the peer: a bare Python loop that only splits each line (``line.split(sep)``), the floor any
  Python parser of that file sits on;
- the format's parser, consuming every Record.

It prints lines per second for both and the ratio parser/peer (best of ``--repeat`` runs, CPU
time of this process, so other load on the machine disturbs it less than wall time would).

    .venv/bin/python benchmarks/parse.py --lines 1000000
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from enforcer.discovery.formats import parser_for
from enforcer.discovery.reader import open_lines

BLOCKLIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "blocklist-anudeep"
T0 = 1_763_625_600
CSV_MAP = "time=ts:iso,src_ip=client,user=user,host=host,dest_port=port,bytes_up=up,bytes_down=down,action=verdict"
JSONL_MAP = (
    "time=ts:epoch,src_ip=client,user=user,url=url,bytes_up=up,bytes_down=down,action=verdict"
)


def load_hosts(limit: int = 20_000) -> list[str]:
    """Real domain names (hosts-file lines ``0.0.0.0 name``), or synthetic ones without the data."""
    hosts: list[str] = []
    for path in sorted(BLOCKLIST.glob("*.txt")):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "0.0.0.0" and "." in parts[1]:
                hosts.append(parts[1])
    return hosts[:limit] or [f"app{i}.example{i % 97}.com" for i in range(limit)]


class Traffic:
    """A stream of (time, client, user, host, ip, up, down, blocked) with Zipf-like host choice."""

    def __init__(self, hosts: list[str], seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.hosts = hosts
        self.weights = [1 / (rank + 1) for rank in range(len(hosts))]
        self.ips = [f"{self.rng.randint(1, 223)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}" for _ in hosts]  # fmt: skip

    def __call__(self, n: int) -> Iterator[tuple[float, str, str, str, str, int, int, bool]]:
        rng = self.rng
        picks = rng.choices(range(len(self.hosts)), weights=self.weights, k=n)
        users = ["alice", "bob", "carol", "dave", "-", "-"]
        for i, k in enumerate(picks):
            yield (
                T0 + i * 0.013 + rng.random() * 0.01,
                f"10.{i % 7}.{(i * 13) % 256}.{(i * 7) % 250 + 1}",
                users[i % 6],
                self.hosts[k],
                self.ips[k],
                rng.randint(100, 90_000),
                rng.randint(100, 900_000),
                i % 23 == 0,
            )


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def squid(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    for i, (t, c, u, h, ip, _up, down, blocked) in enumerate(rows):
        if blocked:
            yield f"{t:.3f}      2 {c} TCP_DENIED/403 3921 CONNECT {h}:443 {u} HIER_NONE/- text/html\n"
        elif i % 2:
            yield f"{t:.3f}  {down % 9000:5d} {c} TCP_TUNNEL/200 {down} CONNECT {h}:443 {u} HIER_DIRECT/{ip} -\n"
        else:
            yield f"{t:.3f}  {down % 900:5d} {c} TCP_MISS/200 {down} GET http://{h}/p/{i}?q={i % 97} {u} HIER_DIRECT/{ip} text/html\n"


def zeek_header(path: str, fields: str) -> list[str]:
    return ["#separator \\x09\n", "#set_separator\t,\n", "#empty_field\t(empty)\n", "#unset_field\t-\n",
            f"#path\t{path}\n", "#open\t2025-11-20-08-00-00\n", "#fields\t" + fields.replace(" ", "\t") + "\n"]  # fmt: skip


def zeek_http(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    yield from zeek_header(
        "http",
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth method host uri referrer version user_agent origin request_body_len response_body_len status_code status_msg info_code info_msg tags username password proxied orig_fuids orig_filenames orig_mime_types resp_fuids resp_filenames resp_mime_types",
    )
    for i, (t, c, u, h, ip, up, down, _b) in enumerate(rows):
        yield f"{t:.6f}\tCz{i:016d}\t{c}\t{40000 + i % 20000}\t{ip}\t80\t1\tGET\t{h}\t/p/{i}\t-\t1.1\tMozilla/5.0\t-\t{up if i % 5 == 0 else 0}\t{down}\t200\tOK\t-\t-\t(empty)\t{u}\t-\t-\t-\t-\t-\tFz{i:016d}\t-\ttext/html\n"


def zeek_ssl(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    yield from zeek_header(
        "ssl",
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name resumed last_alert next_protocol established ssl_history cert_chain_fps client_cert_chain_fps sni_matches_cert validation_status",
    )
    for i, (t, c, _u, h, ip, _up, _down, _b) in enumerate(rows):
        yield f"{t:.6f}\tCz{i:016d}\t{c}\t{40000 + i % 20000}\t{ip}\t443\tTLSv13\tTLS_AES_128_GCM_SHA256\tx25519\t{h}\tF\t-\t-\tT\tCsiI\t(empty)\t(empty)\t-\t-\n"


def zeek_conn(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    yield from zeek_header(
        "conn",
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents",
    )
    for i, (t, c, _u, _h, ip, up, down, _b) in enumerate(rows):
        yield f"{t:.6f}\tCz{i:016d}\t{c}\t{40000 + i % 20000}\t{ip}\t443\ttcp\tssl\t1.5\t{up}\t{down}\tSF\tT\tF\t0\tShADadFf\t20\t{up + 800}\t25\t{down + 1000}\t-\n"


def zeek_json(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    for i, (t, c, _u, h, ip, _up, _down, _b) in enumerate(rows):
        yield json.dumps({"_path": "ssl", "ts": round(t, 6), "uid": f"Cz{i:016d}", "id.orig_h": c, "id.orig_p": 40000 + i % 20000, "id.resp_h": ip, "id.resp_p": 443, "version": "TLSv13", "server_name": h, "established": True}) + "\n"  # fmt: skip


def w3c(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    yield "#Software: SGOS 7.3.10.1\n#Version: 1.0\n"
    yield "#Fields: date time time-taken c-ip cs-username cs-auth-group x-exception-id sc-filter-result cs-categories cs(Referer) sc-status s-action cs-method rs(Content-Type) cs-uri-scheme cs-host cs-uri-port cs-uri-path cs-uri-query cs-uri-extension cs(User-Agent) s-ip sc-bytes cs-bytes x-virus-id\n"
    for i, (t, c, u, h, _ip, up, down, blocked) in enumerate(rows):
        stamp = iso(t)
        result = "DENIED" if blocked else "OBSERVED"
        yield f'{stamp[:10]} {stamp[11:19]} {down % 900} {c} {u} - - {result} "Technology/Internet" - 200 TCP_NC_MISS GET text/html https {h} 443 /p/{i} - - "Mozilla/5.0 (Windows NT 10.0; Win64; x64)" 192.168.1.5 {down} {up} -\n'


def panos(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    for i, (t, c, u, _h, ip, up, down, blocked) in enumerate(rows):
        stamp = iso(t).replace("-", "/").replace("T", " ")[:19]
        action = "deny" if blocked else "allow"
        user = "" if u == "-" else f"corp\\{u}"
        yield (f"1,{stamp},013201001234,TRAFFIC,end,2561,{stamp},{c},{ip},203.0.113.10,{ip},Allow-Web,{user},,ssl,vsys1,trust,untrust,ethernet1/2,ethernet1/1,Fwd,{stamp},{i},1,{40000 + i % 20000},443,{1024 + i % 60000},443,0x400053,tcp,{action},{up + down},{up},{down},40,{stamp},12,computer-and-internet-info,,{7000000000 + i},0x8000000000000000,10.0.0.0-10.255.255.255,United States,,18,22,tcp-fin,0,0,0,0,,PA-440,from-policy" + ",," * 20 + "\n")  # fmt: skip


def zscaler(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    for i, (t, c, u, h, ip, up, down, blocked) in enumerate(rows):
        d = dt.datetime.fromtimestamp(t, dt.UTC)
        stamp = f"{d:%a %b} {d.day} {d:%H:%M:%S %Y}"
        login = "None" if u == "-" else f"{u}@contoso.com"
        action = "Blocked" if blocked else "Allowed"
        yield f'"{stamp}","{login}","HTTPS","{h}/p/{i}","{action}","General Browsing","General Browsing","{up}","{down}","12","3","Business Use","Information Technology","Web Search","None","None","0","None","None","HQ","Engineering","{c}","{ip}","GET","200","Mozilla/5.0","None","None","None","text/html","None","NA","NA","N/A"\n'


def generic_csv(rows: Iterable[tuple[float, str, str, str, str, int, int, bool]]) -> Iterator[str]:
    yield "ts,client,user,host,port,up,down,verdict\n"
    for t, c, u, h, _ip, up, down, blocked in rows:
        yield f"{iso(t)},{c},{u},{h},443,{up},{down},{'block' if blocked else 'allow'}\n"


def generic_jsonl(
    rows: Iterable[tuple[float, str, str, str, str, int, int, bool]],
) -> Iterator[str]:
    for i, (t, c, u, h, _ip, up, down, blocked) in enumerate(rows):
        yield json.dumps({"ts": round(t, 3), "client": c, "user": u, "url": f"https://{h}/p/{i}", "up": up, "down": down, "verdict": "block" if blocked else "allow"}) + "\n"  # fmt: skip


# name: (writer, --format, --map, the peer's separator: None splits on whitespace)
CASES: dict[str, tuple[Callable[..., Iterator[str]], str, str | None, str | None]] = {
    "squid": (squid, "squid", None, None),
    "zeek http TSV": (zeek_http, "zeek", None, "\t"),
    "zeek ssl TSV": (zeek_ssl, "zeek", None, "\t"),
    "zeek conn TSV": (zeek_conn, "zeek", None, "\t"),
    "zeek ssl JSON": (zeek_json, "zeek", None, ","),
    "w3c (ProxySG)": (w3c, "w3c", None, None),
    "panos": (panos, "panos", None, ","),
    "zscaler-nss": (zscaler, "zscaler-nss", None, ","),
    "csv": (generic_csv, "csv", CSV_MAP, ","),
    "jsonl": (generic_jsonl, "jsonl", JSONL_MAP, ","),
}


def drain(items: Iterator[object]) -> None:
    """Consume `items` the cheapest way (a zero-length deque), so that no loop of ours is timed."""
    collections.deque(items, maxlen=0)


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    """CPU seconds of the fastest of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only these cases (repeatable)")
    args = parser.parse_args()

    traffic = Traffic(load_hosts())
    print(f"{'format':<16} {'split loop l/s':>15} {'parser l/s':>12} {'ratio':>6}  records  bad")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (write, fmt, mapping, sep) in CASES.items():
            if args.only and name not in args.only:
                continue
            path = Path(tmp) / f"{fmt}.log"
            with path.open("w") as out:
                out.writelines(write(traffic(args.lines)))
            lines = sum(1 for _ in open_lines(path))

            def peer(path: Path = path, sep: str | None = sep) -> None:
                for line in open_lines(path):
                    line.split(sep)

            parse = parser_for(fmt, mapping)
            peer_rate = lines / best_seconds(peer, args.repeat)
            ours_rate = lines / best_seconds(lambda: drain(parse(open_lines(path))), args.repeat)  # noqa: B023
            kinds = collections.Counter(type(item).__name__ for item in parse(open_lines(path)))
            print(
                f"{name:<16} {peer_rate:>15,.0f} {ours_rate:>12,.0f} {ours_rate / peer_rate:>6.2f}"
                f"  {kinds['Record']:>7} {kinds['BadLine']:>4}"
            )
            path.unlink()


if __name__ == "__main__":
    main()
