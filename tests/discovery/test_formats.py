"""Each log format read from the sample logs in examples/logs (written from the formats' docs)."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from enforcer.discovery.formats import FORMATS, parser_for
from enforcer.discovery.reader import open_lines
from enforcer.discovery.records import BadLine, FormatError, Record

LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"
CSV_MAP = (
    "time=timestamp:iso,src_ip=client_ip,user=username,device=device,host=dest_host,"
    "dest_port=dest_port,bytes_up=sent,bytes_down=received,action=verdict"
)
JSONL_MAP = (
    "time=ts:epoch,src_ip=source.ip,user=source.user,device=source.host,url=url,"
    "bytes_up=bytes.out,bytes_down=bytes.in,action=decision"
)


def utc(text: str) -> float:
    """Epoch seconds of ``YYYY-MM-DD HH:MM:SS`` UTC, computed independently of the parsers."""
    date, clock = text.split()
    return float(
        calendar.timegm((*map(int, date.split("-")), *map(int, clock.split(":")), 0, 0, 0))
    )


def read(name: str, fmt: str, mapping: str | None = None) -> list[Record | BadLine]:
    return list(parser_for(fmt, mapping)(open_lines(LOGS / name)))


def records(name: str, fmt: str, mapping: str | None = None) -> list[Record]:
    out = read(name, fmt, mapping)
    bad = [o for o in out if isinstance(o, BadLine)]
    assert bad == []
    return [o for o in out if isinstance(o, Record)]


def test_squid_native_access_log():
    recs = records("squid-access.log", "squid")
    assert len(recs) == 30
    assert recs[0] == Record(
        time=1763625600.324,
        host="www.dropbox.com",
        src_ip="10.1.2.20",
        user="alice",
        dest_ip="162.125.1.18",
        dest_port=443,
        bytes_down=416002,
        action="allowed",
    )
    assert recs[1].host == "drive.google.com" and recs[1].dest_port == 80
    denied = [r for r in recs if r.action == "blocked"]
    assert denied and all(r.dest_ip == "" for r in denied)  # HIER_NONE/-
    assert {r.user for r in recs} == {"alice", "bob", "carol", "dave", ""}


def test_squid_gzip_reads_the_same():
    assert records("squid-access.log.gz", "squid") == records("squid-access.log", "squid")


def test_zeek_http_tsv():
    recs = records("zeek-http.log", "zeek")
    assert len(recs) == 30  # 8 header lines and #close are not records nor bad lines
    first = recs[0]
    assert first.host == "www.dropbox.com" and first.src_ip == "10.1.2.20"
    assert (first.dest_ip, first.dest_port) == ("162.125.1.18", 80)
    assert (first.bytes_up, first.bytes_down, first.user) == (31908, 84820, "alice")
    assert recs[5].host == ""  # Host header unset ("-")
    assert recs[1].user == ""


def test_zeek_conn_tsv_has_bytes_and_no_host():
    recs = records("zeek-conn.log", "zeek")
    assert len(recs) == 30
    assert all(r.host == "" for r in recs)
    assert (recs[0].bytes_up, recs[0].bytes_down) == (85312, 513141)
    assert (recs[3].bytes_up, recs[3].bytes_down) == (0, 0)  # S0: unset byte counts


def test_zeek_ssl_json_epoch_and_iso_times():
    recs = records("zeek-ssl.json", "zeek")
    assert len(recs) == 30
    assert recs[0].host == "www.dropbox.com" and recs[0].time == 1763625600.482737
    assert recs[1].time == pytest.approx(1763625637.387895)  # written as ISO-8601
    assert recs[4].host == "" and recs[4].dest_ip == "52.85.132.45"  # no SNI
    assert all(r.dest_port == 443 and r.bytes_up == 0 for r in recs)


def test_zeek_json_detects_log_type_from_fields():
    lines = [
        '{"ts":1700000000.5,"id.orig_h":"10.0.0.1","id.orig_p":5,"id.resp_h":"1.2.3.4","id.resp_p":80,"method":"GET","host":"Example.COM:8080","request_body_len":10,"response_body_len":20}',
        '{"ts":1700000001,"id.orig_h":"10.0.0.1","id.resp_h":"1.2.3.4","id.resp_p":443,"proto":"tcp","conn_state":"SF","orig_bytes":7,"resp_bytes":9}',
        '{"ts":"2023-11-14T22:13:22Z","id":{"orig_h":"10.0.0.2","resp_h":"5.6.7.8","resp_p":443},"server_name":"x.test."}',
    ]
    http, conn, ssl = list(FORMATS["zeek"](lines))
    assert http == Record(
        1700000000.5,
        "example.com",
        "10.0.0.1",
        dest_ip="1.2.3.4",
        dest_port=80,
        bytes_up=10,
        bytes_down=20,
    )
    assert conn == Record(
        1700000001.0, "", "10.0.0.1", dest_ip="1.2.3.4", dest_port=443, bytes_up=7, bytes_down=9
    )
    assert ssl == Record(
        utc("2023-11-14 22:13:22"), "x.test", "10.0.0.2", dest_ip="5.6.7.8", dest_port=443
    )


def test_zeek_tsv_without_fields_header_is_fatal():
    with pytest.raises(FormatError, match=r"line 1: .*#fields"):
        list(FORMATS["zeek"](["1700000000.1\tCx\t10.0.0.1\t5\t1.2.3.4\t80\n"]))


def test_zeek_tsv_unsupported_log_type_is_fatal():
    header = ["#separator \\x09\n", "#path\tx509\n", "#fields\tts\tid\tcertificate.subject\n"]
    with pytest.raises(FormatError, match="line 3: Zeek log type 'x509'"):
        list(FORMATS["zeek"](header))


def test_zeek_fields_may_change_mid_file():
    lines = [
        "#separator \\x09",
        "#path\tssl",
        "#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tserver_name",
        "1700000000.0\t10.0.0.1\t1\t1.1.1.1\t443\ta.test",
        "#path\tconn",
        "#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\torig_bytes\tresp_bytes\tconn_state",
        "1700000001.0\t10.0.0.1\t1\t1.1.1.1\t443\t5\t6\tSF",
    ]
    ssl, conn = list(FORMATS["zeek"](lines))
    assert ssl.host == "a.test"  # type: ignore[union-attr]
    assert (conn.bytes_up, conn.bytes_down) == (5, 6)  # type: ignore[union-attr]


def test_iis_w3c():
    recs = records("iis-w3c.log", "w3c")
    assert len(recs) == 30  # CRLF line ends; a #Date directive mid-file
    assert recs[0] == Record(
        time=utc("2025-11-20 08:00:00"),
        host="intranet.contoso.com",
        src_ip="10.1.2.20",
        user="CONTOSO\\alice",
        dest_ip="10.0.0.10",
        dest_port=443,
        bytes_up=2474,
        bytes_down=59880,
    )
    assert recs[2].host == "intranet.contoso.com"  # "intranet.contoso.com:8443"


def test_proxysg_w3c_quoted_fields_and_actions():
    recs = records("proxysg-w3c.log", "w3c")
    assert len(recs) == 30
    assert recs[0].host == "www.dropbox.com" and recs[0].user == "alice"
    assert (recs[0].bytes_down, recs[0].bytes_up) == (458158, 244133)
    assert recs[0].dest_ip == ""  # s-ip is the proxy itself
    assert recs[5].action == "blocked" and recs[0].action == "allowed"


def test_w3c_fields_change_mid_file():
    lines = [
        "#Fields: date time c-ip cs-host",
        "2024-01-02 03:04:05 10.0.0.1 a.test",
        "#Fields: date time cs-host c-ip sc-bytes",
        "2024-01-02 03:04:06 b.test 10.0.0.2 77",
        "2024-01-02 03:04:07 10.0.0.3",
    ]
    a, b, bad = list(FORMATS["w3c"](lines))
    assert (a.host, a.src_ip) == ("a.test", "10.0.0.1")  # type: ignore[union-attr]
    assert (b.host, b.src_ip, b.bytes_down) == ("b.test", "10.0.0.2", 77)  # type: ignore[union-attr]
    assert bad == BadLine(5, "expected 5 fields, got 3", "2024-01-02 03:04:07 10.0.0.3")


def test_panos_traffic_csv():
    out = records("panos-traffic.csv", "panos")
    assert len(out) == 31
    first = out[0]
    assert first == Record(
        time=utc("2025-11-20 08:00:00"),
        host="",
        src_ip="10.1.2.20",
        user="contoso\\alice",
        dest_ip="162.125.1.18",
        dest_port=80,
        bytes_up=37802,
        bytes_down=648409,
        action="allowed",
    )
    assert out[1].device == "LAPTOP-001"
    assert {r.action for r in out} == {"allowed", "blocked"}
    url = out[10]  # the URL-filtering THREAT line carries the host
    assert (url.host, url.action, url.user) == ("chatgpt.com", "blocked", "contoso\\dave")
    # TRAFFIC lines have no host: the App-ID maps to a catalog app through app_names.csv.
    assert (out[2].host, out[2].dest_ip) == ("app:dropbox", "104.18.32.47")
    assert {r.host for r in out if r.host.startswith("app:")} == {"app:dropbox", "app:slack"}


@pytest.mark.parametrize(
    ("vendor", "name", "host"),
    [
        ("panos", "dropbox-base", "app:dropbox"),
        ("panos", "dropbox-uploading", "app:dropbox"),
        ("panos", "ms-onedrive-base", "app:onedrive"),
        ("panos", "web-browsing", ""),
        ("panos", "ssl", ""),
        ("zscaler", "Google Drive", "app:google-drive"),
        ("zscaler", "General Browsing", ""),
        ("zscaler", "dropbox-base", ""),  # App-ID families are PAN-OS names only
    ],
)
def test_application_names_map_to_catalog_apps(vendor: str, name: str, host: str) -> None:
    from enforcer.discovery.formats.app_names import app_host

    assert app_host(vendor, name) == host


def test_the_application_name_table_names_catalog_apps_only() -> None:
    from enforcer.catalog import load_catalog
    from enforcer.discovery.formats.app_names import _table

    catalog = load_catalog()
    assert {app for app in _table().values() if app not in catalog.apps} == set()


def test_an_app_name_without_a_host_is_attributed_to_its_app() -> None:
    from enforcer.catalog import load_catalog
    from enforcer.discovery.aggregate import Aggregator
    from enforcer.discovery.attribute import Attributor

    line = "time=Thu Nov 20 08:00:00 2025\tcip=10.1.2.20\tsip=203.0.113.5\tappname=Slack\treqsize=5\trespsize=6"
    aggregator = Aggregator(Attributor(load_catalog()))
    aggregator.add_all(FORMATS["zscaler-nss"]([line]))
    assert [app for _, app, _ in aggregator.rollup().apps] == ["slack"]


def test_panos_other_log_types_are_bad_lines_and_headers_skipped():
    lines = [
        "Domain,Receive Time,Serial #,Type,Threat/Content Type",
        "1,2024/01/02 03:04:05,0123,SYSTEM,general," + ",".join(["x"] * 40),
        "1,2024/01/02 03:04:05,0123,TRAFFIC,end",
    ]
    system, short = list(FORMATS["panos"](lines))
    assert system.line_no == 2 and system.reason == "not a TRAFFIC log (type 'SYSTEM')"  # type: ignore[union-attr]
    assert short == BadLine(3, "expected at least 34 fields, got 5", lines[2])


@pytest.mark.parametrize("name", ["zscaler-nss.log", "zscaler-nss-kv.log"])
def test_zscaler_nss_positional_and_name_value(name):
    recs = records(name, "zscaler-nss")
    assert len(recs) == 30
    assert recs[0] == Record(
        time=utc("2025-11-20 08:00:00"),
        host="www.dropbox.com",
        src_ip="10.1.2.20",
        user="alice@contoso.com",
        device="CONTOSO-LT000",
        dest_ip="162.125.1.18",
        bytes_up=82947,
        bytes_down=310802,
        action="allowed",
    )
    assert recs[4].action == "blocked"


def test_zscaler_documented_sample_line():
    line = (
        '"Mon Jun 20 15:29:11 2022","new-gre","HTTP","ebay.com/","Blocked","Ebay","Consumer Apps",'
        '"72","14061","0","0","Productivity Loss","Shopping and Auctions","Online Shopping","None",'
        '"None","0","None","None","new-gre","Default Department","172.17.3.49","66.211.175.229",'
        '"GET","403","curl/7.68.0","None","FwFilter","Firewall_1","Other","None","NA","NA","N/A"'
    )
    (rec,) = list(FORMATS["zscaler-nss"]([line]))
    assert rec == Record(
        utc("2022-06-20 15:29:11"), "ebay.com", "172.17.3.49", user="new-gre",
        dest_ip="66.211.175.229", bytes_up=72, bytes_down=14061, action="blocked",
    )  # fmt: skip


def test_zscaler_leef_name_value():
    line = "LEEF:1.0|Zscaler|NSS|4.1|Allowed|devTime=Jun 20 2022 15:29:11 GMT\tsrc=10.0.0.9\tusrName=a@b.test\turl=https://Files.Example.org/x\tsrcBytes=5\tdstBytes=6\taction=Allowed"
    (rec,) = list(FORMATS["zscaler-nss"]([line]))
    assert rec == Record(
        utc("2022-06-20 15:29:11"), "files.example.org", "10.0.0.9", user="a@b.test",
        dest_port=443, bytes_up=5, bytes_down=6, action="allowed",
    )  # fmt: skip


def test_generic_csv_with_mapping():
    recs = records("generic.csv", "csv", CSV_MAP)
    assert len(recs) == 30
    assert recs[0] == Record(
        time=1763625600.608,
        host="www.dropbox.com",
        src_ip="10.1.2.20",
        user="alice",
        device="ws-00",
        dest_port=443,
        bytes_up=75923,
        bytes_down=149765,
        action="allowed",
    )
    assert recs[7].action == "blocked"


def test_generic_jsonl_with_nested_keys_and_url():
    recs = records("generic.jsonl", "jsonl", JSONL_MAP)
    assert len(recs) == 30
    assert recs[0] == Record(
        time=1763625600.608,
        host="www.dropbox.com",
        src_ip="10.1.2.20",
        user="alice",
        device="ws-00",
        dest_port=443,
        bytes_up=30723,
        bytes_down=194782,
        action="allowed",
    )
    assert recs[2].user == ""  # null


def test_generic_time_auto_detects_epoch_millis_and_iso():
    parse = parser_for("csv", "time=t,host=h")
    out = list(
        parse(
            [
                "t,h",
                "1700000000,a.test",
                "1700000000500,b.test",
                "2023-11-14T22:13:20+00:00,c.test",
                "soon,d.test",
            ]
        )
    )
    assert [o.time for o in out[:3]] == [1700000000.0, 1700000000.5, 1700000000.0]  # type: ignore[union-attr]
    assert out[3] == BadLine(5, "bad time 'soon'", "soon,d.test")


def test_generic_csv_missing_column_is_fatal():
    with pytest.raises(FormatError, match="line 1: no column 'nope'"):
        list(parser_for("csv", "time=t,host=nope")(["t,h", "1,a"]))


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("time=t,host", "'host' is not field=column"),
        ("time=t,hots=h", "'hots' is not one of time, host, url"),
        ("time=t,host=h,host=g", "'host' is given twice"),
        ("time=t:unix,host=h", "time format 'unix' is not one of epoch, iso, auto"),
        ("host=h", "time=COLUMN is required"),
        ("time=t,user=u", "one of host=, url= or dest_ip= is required"),
        ("time=,host=h", "'time=' names no column"),
    ],
)
def test_bad_mappings_name_the_bad_part(mapping, message):
    with pytest.raises(FormatError, match=message.replace("(", r"\(")):
        parser_for("csv", mapping)


def test_registry_errors():
    with pytest.raises(FormatError, match="unknown format 'bluecoat'"):
        parser_for("bluecoat")
    with pytest.raises(FormatError, match="needs --map"):
        parser_for("jsonl")
    with pytest.raises(FormatError, match="takes no --map"):
        parser_for("squid", "time=t,host=h")
    assert set(FORMATS) == {"squid", "zeek", "w3c", "panos", "zscaler-nss", "csv", "jsonl"}


def test_zeek_path_decides_over_fields():
    software = ["#separator \\x09", "#path\tsoftware", "#fields\tts\thost\thost_p\tname"]
    with pytest.raises(FormatError, match="Zeek log type 'software'"):
        list(FORMATS["zeek"](software))
    split = [
        "#separator \\x09",
        "#path\tconn_long",
        "#fields\tts\tid.orig_h\tid.resp_h\tid.resp_p\torig_bytes\tresp_bytes",
    ]
    (rec,) = list(FORMATS["zeek"]([*split, "1700000000.0\t10.0.0.1\t1.1.1.1\t443\t1\t2"]))
    assert rec == Record(
        1700000000.0, "", "10.0.0.1", dest_ip="1.1.1.1", dest_port=443, bytes_up=1, bytes_down=2
    )


def test_every_sample_gives_float_times_and_int_counts():
    samples = [
        ("squid-access.log", "squid", None), ("zeek-http.log", "zeek", None),
        ("zeek-ssl.json", "zeek", None), ("iis-w3c.log", "w3c", None),
        ("panos-traffic.csv", "panos", None), ("zscaler-nss.log", "zscaler-nss", None),
        ("generic.csv", "csv", CSV_MAP), ("generic.jsonl", "jsonl", JSONL_MAP),
    ]  # fmt: skip
    for name, fmt, mapping in samples:
        for rec in records(name, fmt, mapping):
            assert type(rec.time) is float, (name, rec)
            assert all(type(v) is int for v in (rec.dest_port, rec.bytes_up, rec.bytes_down))
