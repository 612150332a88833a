"""Snapshot reports: stream log files through a format parser into the rollups.

Constant memory whatever the file size: lines are streamed, records aggregated in a bounded
accumulator that is merged into the store whenever it fills up, with the alert policies checked
on each merge (`enforcer.discovery.merge`: the alerts name the upload's report). Bad lines are
counted and the first few kept with their file, line number and reason; they never abort an
upload.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from enforcer.catalog import Catalog
from enforcer.config import get_settings
from enforcer.discovery.aggregate import Aggregator
from enforcer.discovery.attribute import Attributor
from enforcer.discovery.formats import parser_for
from enforcer.discovery.fused import LOOPS
from enforcer.discovery.identity import load_user_names
from enforcer.discovery.merge import merge_logs
from enforcer.discovery.reader import ReadLimits, open_lines
from enforcer.discovery.records import BadLine, FormatError
from enforcer.policy.schema import AlertPolicy
from enforcer.store.named_reports import Report, add_to_report, create_snapshot, delete_report
from enforcer.store.uploads import record_upload, uploaded_at

MAX_SAMPLES = 10


@dataclass
class UploadStats:
    """What an upload did, for the summary a person reads."""

    files: int = 0
    records: int = 0
    attributed: int = 0
    unrecognised: int = 0
    without_host: int = 0
    bad_lines: int = 0
    samples: list[tuple[str, BadLine]] = field(default_factory=list)
    skipped: list[tuple[str, dt.datetime]] = field(default_factory=list)
    """Files whose content was uploaded before (name, when): not counted again."""
    report: str = ""
    """The snapshot report the upload made ("" when every file was skipped)."""
    alerts: int = 0
    """Alerts the alert policies opened on the upload's data."""

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "records": self.records,
            "attributed": self.attributed,
            "unrecognised": self.unrecognised,
            "withoutHost": self.without_host,
            "badLines": self.bad_lines,
            "report": self.report,
            "alerts": self.alerts,
            "skipped": [{"file": f, "uploadedAt": when.isoformat()} for f, when in self.skipped],
            "badLineSamples": [
                {"file": f, "line": b.line_no, "reason": b.reason, "text": b.text}
                for f, b in self.samples
            ],
        }


def ingest_files(
    engine: Engine,
    catalog: Catalog,
    paths: Sequence[Path],
    fmt: str,
    *,
    mapping: str | None = None,
    max_keys: int = 200_000,
    report_name: str | None = None,
    limits: ReadLimits | None = None,
    policies: Sequence[AlertPolicy] = (),
) -> UploadStats:
    """Parse, attribute, aggregate and store the records of some log files, as a new snapshot
    report named `report_name` (refused when taken) or after the first file, and raise what
    the alert `policies` find in them. An upload refused with a FormatError, or from which no
    record was read, leaves no report."""
    parse = parser_for(fmt, mapping)
    users = load_user_names(get_settings())
    aggregator = Aggregator(Attributor(catalog), max_keys=max_keys, users=users)
    stats = UploadStats()

    report: Report | None = None
    period = [float("inf"), 0.0]
    merged: list[int] = []
    """The reports merged into so far: a new snapshot's first merge reads no stored rows."""

    def flush() -> None:
        rollup = aggregator.rollup()
        for usage in (d.usage for d in rollup.devices.values()):
            period[0], period[1] = min(period[0], usage.first_seen), max(period[1], usage.last_seen)
        report_id = report.id if report else 0
        stats.alerts += merge_logs(
            engine, catalog, rollup, report=report_id,
            report_name=report.name if report else "", policies=policies,
            fresh=report is not None and report_id not in merged,
        )  # fmt: skip
        merged.append(report_id)

    done: list[tuple[str, str, int]] = []
    seen_now: set[str] = set()
    for path in paths:
        stats.files += 1
        name = str(path)
        sha256 = file_sha256(path)
        with engine.connect() as conn:
            before = uploaded_at(conn, sha256)
        if before is not None or sha256 in seen_now:
            stats.skipped.append((name, before or dt.datetime.now(dt.UTC)))
            continue
        seen_now.add(sha256)
        if report is None:
            names = [str(p) for p in paths]
            default = Path(name).name + (f" +{len(names) - 1}" if len(names) > 1 else "")
            report = create_snapshot(
                engine, name=report_name or default, fmt=fmt, files=names,
                exact=report_name is not None,
            )  # fmt: skip
            stats.report = report.name
        records_before = aggregator.records

        def bad(line: BadLine, name: str = name) -> None:
            stats.bad_lines += 1
            if len(stats.samples) < MAX_SAMPLES:
                stats.samples.append((name, line))

        try:
            fused = LOOPS.get(fmt)
            if fused is not None:
                fused(aggregator, open_lines(path, limits, bad), bad, flush)
            else:
                lines = open_lines(path, limits, bad)
                aggregator.add_all(parse(lines), on_bad=bad, on_full=flush)
        except FormatError as exc:
            delete_report(engine, str(report.id))  # nothing of a refused upload is kept
            raise FormatError(exc.message, line=exc.line, file=name) from exc
        done.append((sha256, name, aggregator.records - records_before))
    flush()
    if report is not None and not aggregator.records:  # nothing read: no report to keep
        delete_report(engine, str(report.id))
        report, stats.report = None, ""
    report_id = report.id if report else 0
    for sha256, name, records in done:
        if records:  # a file nothing was read from may be uploaded again in the right format
            record_upload(engine, sha256, name=name, fmt=fmt, records=records, report=report_id)
    if report is not None:
        with engine.begin() as conn:
            add_to_report(
                conn, report.id, records=aggregator.records, bad_lines=stats.bad_lines,
                first_seen=period[0], last_seen=period[1],
            )  # fmt: skip
    stats.records = aggregator.records
    stats.attributed = aggregator.attributed
    stats.unrecognised = aggregator.unrecognised
    stats.without_host = aggregator.without_host
    return stats


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        while block := raw.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
