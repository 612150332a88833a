"""`enforcer discovery ...`: upload logs, collect syslog, and the Cloud Discovery reports.

Only Typer and the format names are imported here; each command imports the catalog, the store
and the discovery modules it uses when it runs (`enforcer --help` must not pay for them).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from enforcer.cli._common import actor, days_of, echo_table, settings, store
from enforcer.discovery.formats import FORMATS

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from enforcer.catalog import Catalog
    from enforcer.policy.schema import AlertPolicy

app = typer.Typer(no_args_is_help=True)
T = TypeVar("T")


class Output(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


SINCE = typer.Option("7d", "--since", help="How far back: 24h, 7d, 30d ...")
FORMAT = typer.Option(Output.table, "--format", help="table, csv or json.")
JSON = typer.Option(False, "--json", help="Same as --format json.")
UPLOAD_JSON = typer.Option(False, "--json", help="Print the upload's counts as JSON.")
_selected = {"report": "all"}


def _select_report(value: str) -> str:
    """Keep the command's --report for `_report`, which every report command calls (some
    several times): the commands' own `report` parameter only declares the option."""
    _selected["report"] = value
    return value


REPORT = typer.Option(
    "all",
    "--report",
    "-r",
    help="A named report (`enforcer discovery reports`: an upload or a live source) or all.",
    callback=_select_report,
)


def _emit(
    rows: list[dict[str, Any]] | dict[str, Any],
    fmt: Output,
    as_json: bool,
    columns: list[str] | None = None,
) -> None:
    from enforcer.discovery import reports

    if as_json or fmt is Output.json:
        typer.echo(reports.to_json(rows))
        return
    listed = rows if isinstance(rows, list) else [rows]
    if fmt is Output.csv:
        typer.echo(reports.to_csv(listed), nl=False)
        return
    if not listed:
        typer.echo("No discovery data in that range.")
        return
    cols = columns or list(listed[0])
    echo_table([{c: _shown(r, c) for c in cols} for r in listed], cols)
    if "risk" in cols:
        typer.echo("RISK: the catalog's score, 0 (lowest risk) to 10 (highest).", err=True)


def _shown(row: dict[str, Any], column: str) -> str:
    """A table cell; traffic made only of DNS answers (no byte counts) shows its queries."""
    if column == "traffic" and not row.get("traffic") and row.get("transactions"):
        return f"{row['transactions']} queries"
    return _cell(row.get(column))


def _cell(value: Any) -> str:
    """A table cell: names from devices and logs are shown safely and cut to fit a screen."""
    from enforcer.textsafe import cut

    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return cut(", ".join(map(str, value)), 80)
    return cut(str(value), 60)


def _catalog() -> Catalog:
    """The catalog discovery attributes to: the bundled one and the policy's custom apps."""
    from enforcer.pipeline.load import catalog_with_custom_apps

    return catalog_with_custom_apps(settings().policy_dir)


def _policies() -> tuple[AlertPolicy, ...]:
    """The policy set's alert policies, checked on every source's data (none while the set
    does not load: `enforcer plan` says why)."""
    from enforcer.pipeline.load import discovery_policy

    return discovery_policy(settings().policy_dir)[1]


def _stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=settings().stale_after)


def _report(since: str, build: Callable[[Connection, int, int], T]) -> T:
    """Run a report over the last `since`, of the report chosen with --report; a missing
    machine, user or report is an error, exit 1."""
    from enforcer.discovery import reports
    from enforcer.store.named_reports import ReportError, find_report, scoped

    first, last = reports.day_range(days_of(since))
    with store().connect() as conn:
        try:
            scoped(conn, find_report(conn, _selected["report"]))
            return build(conn, first, last)
        except (reports.NotFoundError, ReportError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


@app.command("upload")
def upload(
    files: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="Log files (gzip accepted)."
    ),
    fmt: str = typer.Option(..., "--format", help=f"One of: {', '.join(FORMATS)}."),
    mapping: str | None = typer.Option(
        None, "--map", help="For csv/jsonl: field=column,... (time, host, src_ip, user, ...)."
    ),
    report_name: str | None = typer.Option(
        None, "--report", help="Name of the snapshot report (default: the first file's name)."
    ),
    as_json: bool = UPLOAD_JSON,
) -> None:
    """Parse firewall / proxy logs into a named snapshot report (streaming; bad lines are
    reported)."""
    from enforcer.discovery.ingest import ingest_files
    from enforcer.discovery.reader import ReadLimits
    from enforcer.discovery.records import FormatError
    from enforcer.discovery.upload_audit import record_upload
    from enforcer.store.named_reports import ReportError

    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format"
        )
    try:
        stats = ingest_files(
            store(), _catalog(), files, fmt, mapping=mapping, report_name=report_name,
            limits=ReadLimits.of(settings()), policies=_policies(),
        )  # fmt: skip
    except (FormatError, ReportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    record_upload(store(), stats, fmt, actor=actor())
    if as_json:
        typer.echo(json.dumps(stats.as_dict(), indent=2))
        return
    typer.echo(
        f"{stats.files} file(s): {stats.records:,} records, {stats.attributed:,} attributed to apps, "
        f"{stats.unrecognised:,} to unrecognised domains, {stats.without_host:,} without a host name, "
        f"{stats.bad_lines:,} bad lines."
    )
    if stats.report:
        typer.echo(f"Snapshot report: {stats.report} (--report {_quoted(stats.report)})")
    if stats.alerts:
        typer.echo(f"Alert policies opened {stats.alerts} alert(s): enforcer discovery alerts")
    for name, when in stats.skipped:
        typer.echo(
            f"  skipped {name}: the same content was uploaded at "
            f"{when.strftime('%Y-%m-%d %H:%M')} UTC (not counted again)"
        )
    for name, bad in stats.samples:
        typer.echo(f"  {name}:{bad.line_no}: {bad.reason}: {bad.text[:80]}")
    if stats.bad_lines > len(stats.samples):
        typer.echo(f"  ... and {stats.bad_lines - len(stats.samples):,} more bad lines")
    if stats.records == 0 and stats.bad_lines:
        from enforcer.discovery.formats import wrong_format_hint

        typer.echo(f"error: no line parsed as {fmt}{wrong_format_hint(files[0], fmt)}", err=True)
        raise typer.Exit(1)


@app.command("sample")
def sample_cmd(
    out: Path = typer.Option(
        Path("enforcer-sample"), "--out", help="Directory to write the logs into."
    ),
    days: int = typer.Option(30, "--days", min=1, max=366, help="Days of traffic, ending now."),
    devices: int = typer.Option(50, "--devices", min=1, max=10_000, help="Made-up devices."),
    seed: int = typer.Option(1, "--seed", help="Same seed, same traffic (only the dates move)."),
) -> None:
    """Write realistic sample logs of the last days (Squid and Zscaler NSS) to try discovery."""
    from enforcer.catalog import load_catalog
    from enforcer.discovery.sample import SQUID_FILE, ZSCALER_FILE, write_sample

    written = write_sample(
        load_catalog(), out, days=days, device_count=devices, now=dt.datetime.now(dt.UTC), seed=seed
    )
    for path, lines in written.files.items():
        typer.echo(f"wrote {path} ({lines:,} lines)")
    typer.echo(
        "Upload them with:\n"
        f"  enforcer discovery upload --format squid {out / SQUID_FILE}\n"
        f"  enforcer discovery upload --format zscaler-nss {out / ZSCALER_FILE}"
    )


@app.command("collect")
def collect(
    listen: str = typer.Option(
        "127.0.0.1:5514", "--listen", help="HOST:PORT for syslog (UDP and TCP)."
    ),
    fmt: str = typer.Option(
        ..., "--format", help=f"Format of the syslog payloads: {', '.join(FORMATS)}."
    ),
    mapping: str | None = typer.Option(
        None, "--map", help="For csv/jsonl: field=column,... (as for upload)."
    ),
    flush_seconds: float = typer.Option(
        5.0, "--flush-seconds", min=0.1, help="Seconds between two roll-ups of the lines received."
    ),
    report_name: str | None = typer.Option(
        None, "--report", help="Name of this source's report (default: syslog LISTEN FORMAT)."
    ),
) -> None:
    """Listen for syslog (RFC 3164/5424, UDP and TCP) carrying log lines and roll them up."""
    import asyncio
    import contextlib
    import signal

    from enforcer import logs
    from enforcer.discovery.aggregate import Aggregator
    from enforcer.discovery.attribute import Attributor
    from enforcer.discovery.formats import parser_for
    from enforcer.discovery.identity import load_user_names
    from enforcer.discovery.merge import SyslogBatches
    from enforcer.discovery.syslog import start_collector
    from enforcer.store.named_reports import continuous_report
    from enforcer.store.named_reports import report_name as name_of

    logs.configure("json", "info")
    log = logs.get_logger("enforcer.collect")
    host, _, port = listen.rpartition(":")
    engine = store()
    source = f"syslog {listen} {fmt}"
    with engine.begin() as conn:
        report = continuous_report(conn, source, name=report_name)
        name = name_of(conn, report)
    catalog = _catalog()
    batches = SyslogBatches(
        engine, catalog, parser_for(fmt, mapping),
        Aggregator(Attributor(catalog), users=load_user_names(settings())),
        report=report, report_name=name, policies=_policies,
    )  # fmt: skip

    def on_line(_sender: str, payload: str) -> None:
        batches.add(payload)

    def flush() -> None:
        lines = batches.flush()
        if lines:
            log.info(
                "syslog_flushed", lines=lines, records=batches.records, bad=batches.bad,
                alerts=batches.alerts,
            )  # fmt: skip

    async def main() -> None:
        handle = await start_collector(host or "127.0.0.1", int(port), on_line)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("collector_started", listen=listen, format=fmt)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), flush_seconds)
            flush()
        handle.close()
        log.info("collector_stopped", records=batches.records, bad=batches.bad)

    asyncio.run(main())


@app.command("refold")
def refold_cmd() -> None:
    """Re-key the data rolled up so far by today's user-name rules (ENFORCER_DISCOVERY_USER_DOMAINS,
    ENFORCER_DISCOVERY_USER_MAP): run after changing them. Safe to run again."""
    from enforcer.discovery.identity import load_user_names
    from enforcer.store.refold import refold_users

    stats = refold_users(store(), load_user_names(settings()))
    for name, user in stats.folded.items():
        typer.echo(f"  {name} -> {user}")
    changed = ", ".join(f"{table} {rows:,}" for table, rows in stats.rows.items() if rows)
    typer.echo(
        f"Folded {len(stats.folded):,} user name(s); rows changed: {changed or 'none'}."
        if any(stats.rows.values())
        else "Nothing to refold: every user is named by today's rules."
    )


@app.command("process")
def process() -> None:
    """Roll up the network events devices have reported and check the alert policies on them
    (the daemon does this on a schedule)."""
    from enforcer.discovery.continuous import process_events

    total = 0
    catalog, policies = _catalog(), _policies()
    while True:
        done = process_events(store(), catalog, policies=policies)
        total += done
        if not done:
            break
    typer.echo(f"Processed {total:,} network events.")


@app.command("apps")
def apps_cmd(
    since: str = SINCE,
    fmt: Output = FORMAT,
    as_json: bool = JSON,
    report: str = REPORT,
    custom_tag: str = typer.Option(
        "", "--tag", help="Only the apps with this custom tag (approved-for-finance)."
    ),
) -> None:
    """Discovered apps: category, risk, tag, transactions, traffic, users, devices, first/last seen."""
    from enforcer.discovery import reports

    rows = _report(
        since, lambda c, f, la: reports.apps_report(c, _catalog(), f, la, custom_tag=custom_tag)
    )
    _emit(
        rows,
        fmt,
        as_json,
        [
            "app",
            "category",
            "risk",
            "tag",
            "transactions",
            "traffic",
            "upload",
            "download",
            "users",
            "devices",
            "lastSeen",
        ],
    )


@app.command("domains")
def domains_cmd(
    since: str = SINCE, fmt: Output = FORMAT, as_json: bool = JSON, report: str = REPORT
) -> None:
    """Unrecognised domains (no catalog app), ranked by traffic: candidates for custom apps."""
    from enforcer.discovery import reports

    rows, junk = _report(since, reports.domains_and_junk)
    _emit(rows, fmt, as_json)
    if junk:
        # On stderr: --json and csv stay the rows.
        typer.echo(
            f"{junk:,} transaction(s) left out: wildcards, reverse lookups, local, "
            "single-label and service names are no cloud apps",
            err=True,
        )


@app.command("machines")
def machines_cmd(
    since: str = SINCE,
    fmt: Output = FORMAT,
    as_json: bool = JSON,
    limit: int = typer.Option(100, "--limit", min=1),
    report: str = REPORT,
    search: str | None = typer.Option(
        None, "--search", "-q", help="Part of a hostname, an IP address or a user name."
    ),
) -> None:
    """Machines by traffic, with their IP addresses, risk level (the period against the
    device's 30 days before it), last user, OS, groups and enrolment state."""
    from enforcer.discovery import reports
    from enforcer.discovery.identity import load_user_names

    after = _stale_after()
    names = load_user_names(settings())
    rows = _report(
        since,
        lambda c, f, la: reports.machines_report(
            c, _catalog(), f, la, stale_after=after, limit=limit + 1, search=search, names=names
        ),
    )
    _emit(rows[:limit], fmt, as_json)
    if len(rows) > limit:
        total = _report(
            since, lambda c, f, la: reports.machine_count(c, f, la, search=search, names=names)
        )
        # On stderr, so that --json and --format csv stay exactly the rows.
        typer.echo(
            f"{limit} of {total} machines shown (the most traffic first): --limit {total} for all",
            err=True,
        )


@app.command("machine")
def machine_cmd(
    device: str = typer.Argument(
        ...,
        metavar="HOSTNAME",
        help="The machine's name, or its IP address, as `machines` lists it.",
    ),
    since: str = SINCE,
    fmt: Output = FORMAT,
    as_json: bool = JSON,
    report: str = REPORT,
) -> None:
    """One machine: overview, risk explained, enrolled devices, discovered apps, top processes,
    user history, IP address history."""
    from enforcer.discovery import reports

    after = _stale_after()
    data = _report(
        since,
        lambda c, f, la: reports.machine_report(c, _catalog(), device, f, la, stale_after=after),
    )
    if as_json or fmt is not Output.table:
        _emit(data if fmt is not Output.csv else data["apps"], fmt, as_json)
        return
    typer.echo(f"{data['device']}: risk {data['riskLevel']} ({data['riskScore']} points), "
               f"{data['transactions']:,} transactions, up {data['upload']:,} B, down {data['download']:,} B")  # fmt: skip
    for reason in data["riskReasons"]:
        typer.echo(f"  - {reason}")
    if data["enrolledDevices"]:
        typer.echo("\nEnrolled devices:")
        _emit(data["enrolledDevices"], Output.table, False, ENROLLED_COLUMNS)
    typer.echo("\nDiscovered apps:")
    _emit(data["apps"], Output.table, False)
    typer.echo("\nTop processes:")
    _emit_processes(data["topProcesses"])
    typer.echo("\nUser history:")
    _emit(data["users"], Output.table, False)
    typer.echo("\nIP address history:")
    _emit(data["ipAddresses"], Output.table, False)


ENROLLED_COLUMNS = [
    "deviceId", "os", "osVersion", "agentVersion", "groups", "appliedRevision", "appliedAt",
    "timeToEnforce", "stale",
]  # fmt: skip
PROCESS_COLUMNS = ["process", "path", "requests", "upload", "download", "devices", "users"]


def _emit_processes(rows: list[dict[str, Any]]) -> None:
    if rows:
        _emit(rows, Output.table, False, PROCESS_COLUMNS)
    else:
        typer.echo("No events naming a process in that range (only intercepted traffic does).")


@app.command("app")
def app_cmd(
    app_id: str = typer.Argument(..., metavar="APP_ID"),
    since: str = SINCE,
    fmt: Output = FORMAT,
    as_json: bool = JSON,
    report: str = REPORT,
) -> None:
    """One app: usage, the machines and users that reached it, its top processes."""
    from enforcer.discovery import reports

    data = _report(since, lambda c, f, la: reports.app_report(c, _catalog(), app_id, f, la))
    if as_json or fmt is not Output.table:
        _emit(data if fmt is not Output.csv else data["topProcesses"], fmt, as_json)
        return
    typer.echo(f"{data['name']} ({data['app']}): {data['category'] or 'no category'}, "
               f"risk {_cell(data['risk'])}, tag {data['tag'] or 'none'}")  # fmt: skip
    typer.echo(f"{data['transactions']:,} transactions, up {data['upload']:,} B, "
               f"down {data['download']:,} B, {data['blocked']:,} blocked")  # fmt: skip
    from enforcer.textsafe import for_terminal

    machines, users = ", ".join(data["machines"]), ", ".join(data["users"])
    typer.echo(f"Machines ({len(data['machines'])}): {for_terminal(machines) or '-'}")
    typer.echo(f"Users ({len(data['users'])}): {for_terminal(users) or '-'}")
    typer.echo("\nTop processes:")
    _emit_processes(data["topProcesses"])


@app.command("users")
def users_cmd(
    since: str = SINCE, fmt: Output = FORMAT, as_json: bool = JSON, report: str = REPORT
) -> None:
    """Users by traffic, with how many devices and apps each used."""
    from enforcer.discovery import reports

    _emit(_report(since, reports.users_report), fmt, as_json)


@app.command("user")
def user_cmd(
    name: str = typer.Argument(..., metavar="NAME"),
    since: str = SINCE,
    fmt: Output = FORMAT,
    as_json: bool = JSON,
    report: str = REPORT,
) -> None:
    """One user: the devices they used (follow with `enforcer discovery machine ID`) and their apps."""
    from enforcer.discovery import reports
    from enforcer.discovery.identity import load_user_names

    names = load_user_names(settings())
    data = _report(since, lambda c, f, la: reports.user_report(c, name, f, la, names=names))
    if not as_json and fmt is not Output.json:  # a table or CSV cell lists the forms by name
        data["forms"] = [form["form"] for form in data["forms"]]
    _emit(data, fmt, as_json)


@app.command("alerts")
def alerts_cmd(
    since: str = SINCE,
    status: str | None = typer.Option(None, "--status", help="open, acknowledged or closed."),
    severity: str | None = typer.Option(None, "--severity"),
    policy: str | None = typer.Option(
        None, "--policy", help="Only this alert policy's alerts ('' for the indicators')."
    ),
    fmt: Output = FORMAT,
    as_json: bool = JSON,
) -> None:
    """Alerts: raised by alert policies, and by hits on indicators with generateAlert."""
    from enforcer.store.alerts import list_alerts

    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_of(since))
    with store().connect() as conn:
        rows = list_alerts(
            conn, since=start, status=status, severity=severity, policy=policy, limit=1000
        )
    for row in rows:
        row["machine"] = row["machine"] or row["device_id"]
        row["lastSeen"] = row["last_seen"] or row["time"]
    _emit(
        rows,
        fmt,
        as_json,
        ["id", "time", "lastSeen", "severity", "status", "policy", "report", "machine", "user",
         "app_id", "domain", "hits", "action"],
    )  # fmt: skip


@app.command("ack")
def ack_cmd(alert_id: int = typer.Argument(..., metavar="ALERT_ID")) -> None:
    """Acknowledge an alert."""
    from enforcer.store.alerts import acknowledge_alert

    if not acknowledge_alert(store(), alert_id, actor=actor()):
        typer.echo(f"error: no alert with id {alert_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Alert {alert_id} acknowledged.")


@app.command("close")
def close_cmd(alert_id: int = typer.Argument(..., metavar="ALERT_ID")) -> None:
    """Close an alert (handled): the next hit on its policy, machine, user and app opens a new one."""
    from enforcer.store.alerts import close_alert

    if not close_alert(store(), alert_id, actor=actor()):
        typer.echo(f"error: no alert with id {alert_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Alert {alert_id} closed.")


REPORT_COLUMNS = [
    "name", "kind", "source", "files", "periodStart", "periodEnd", "lines", "badLines",
]  # fmt: skip


@app.command("reports")
def reports_cmd(fmt: Output = FORMAT, as_json: bool = JSON) -> None:
    """The named reports: one snapshot per upload (its files, period, lines and bad lines) and
    one per live source (the devices' events, each syslog collector). Select one with --report."""
    from enforcer.store.named_reports import list_reports

    with store().connect() as conn:
        rows = [r.as_json() for r in list_reports(conn)]
    if not rows and not as_json and fmt is Output.table:
        typer.echo("No reports yet: upload logs (enforcer discovery upload) or run the daemon.")
        return
    _emit(rows, fmt, as_json, REPORT_COLUMNS)


@app.command("delete")
def delete_cmd(
    name: str = typer.Argument(..., metavar="REPORT"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Delete a snapshot report and its data (its files may then be uploaded again)."""
    from enforcer.store.named_reports import ReportError, delete_report, find_report

    try:
        with store().connect() as conn:
            found = find_report(conn, name)
        if found is None:
            raise ReportError("name the report to delete ('all' cannot be deleted)")
        if not yes and not typer.confirm(
            f"Delete the report {found.name!r} ({found.records:,} records) and its data?"
        ):
            raise typer.Exit(1)
        deleted = delete_report(store(), str(found.id), actor=actor())
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Deleted the report {deleted.name!r} and its data.")


def _quoted(name: str) -> str:
    import shlex

    return shlex.quote(name)
