"""What the file sinks (rpz, hosts, dnsmasq) share: picking entries, diffing, writing atomically.

A file sink renders one line format; everything else is the same for all three, so it lives here:

* entries: the device-wide indicators a resolver can enforce, as sorted `Entry` tuples;
* plan: parse the existing file into name -> record and diff it against the rendered entries;
* apply: stream the new file to a temporary file in the same directory, fsync, ``os.replace``
  (readers see the old file or the new one, never half of one), then run the reload hook.

A file that does not start with our ownership line is refused rather than overwritten: pointing a
sink at ``/etc/hosts`` by mistake must not wipe it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from enforcer.config import Settings
from enforcer.decide.expand import MANAGED_MARKER
from enforcer.models import Action, Indicator
from enforcer.plan.model import ChangeAction
from enforcer.sinks.base import SinkChange, SinkError, SinkPlan, SinkResult, device_wide, reason

BLOCK = "block"
PASSTHRU = "passthru"
FILE_MODE = 0o644
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*")
_MAX_NAME = 230
"""Room left for ``*.`` and the policy zone's own name within DNS's 255 octets."""


Entry = tuple[str, str, Indicator]
"""(name, kind, indicator): one name a file sink writes, BLOCK or PASSTHRU. A plain tuple: a
million NamedTuples cost seconds to build."""


def select_entries(
    desired: Iterable[Indicator], settings: Settings, *, passthru: bool
) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The sorted entries a resolver-wide file enforces, and the (name, why) it leaves out.

    Block is blocked. Warn is blocked only with ``sink_warn_action = block``: a resolver cannot
    offer the warning's "continue", and blocking there would also defeat the "continue" of devices
    whose shim forwards to it. Audit and Alert only observe, which a file cannot do. Allowed names
    become pass-through exceptions (when the format has them) under a blocked parent.
    """
    warn_blocks = settings.sink_warn_action == "block"
    blocked: dict[str, Indicator] = {}
    allowed: dict[str, Indicator] = {}
    skipped: list[tuple[str, str]] = []
    for name, ind in device_wide(desired).items():
        if ind.action is Action.BLOCK or (ind.action is Action.WARN and warn_blocks):
            target = blocked
        elif ind.action is Action.ALLOWED and passthru:
            target = allowed
        else:
            continue
        if len(name) > _MAX_NAME or not _NAME.fullmatch(name):
            skipped.append((name, "not a plain DNS name"))
            continue
        target[name] = ind
    entries = [(n, BLOCK, i) for n, i in blocked.items()]
    entries += [(n, PASSTHRU, i) for n, i in allowed.items() if _under(n, blocked)]
    entries.sort()
    return entries, skipped


def _under(name: str, blocked: dict[str, Indicator]) -> bool:
    """Whether a parent of `name` is blocked (only then does an exception change anything)."""
    while "." in name:
        name = name.split(".", 1)[1]
        if name in blocked:
            return True
    return False


@dataclass(frozen=True)
class FileSink:
    """One file format. Subclasses say how an entry is written and how a line is read back."""

    name: str
    comment: str
    passthru: bool

    # --- what each format defines ----------------------------------------------------------

    def path(self, settings: Settings) -> Path | None:
        raise NotImplementedError

    def reload_command(self, settings: Settings) -> str:
        raise NotImplementedError

    def preamble(self, revision: int, settings: Settings) -> Iterator[str]:
        """Lines after the ownership line and before the entries."""
        return iter(())

    def record(self, kind: str, settings: Settings) -> str:
        """The value of an entry of this kind as `parse` reads it back (what a diff compares)."""
        raise NotImplementedError

    def lines(self, name: str, kind: str, record: str) -> str:
        """An entry's lines, newline-terminated."""
        raise NotImplementedError

    def parse(self, line: str) -> tuple[str, str] | None:
        """(name, record) of an entry line, or None for any other line."""
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------

    def owner_line(self, revision: int) -> str:
        return (
            f"{self.comment} {MANAGED_MARKER} (sink {self.name}), revision {revision}. "
            "Rewritten on each apply: do not edit.\n"
        )

    def records(self, settings: Settings) -> dict[str, str]:
        return {kind: self.record(kind, settings) for kind in (BLOCK, PASSTHRU)}

    def target(self, settings: Settings) -> Path:
        path = self.path(settings)
        if path is None:
            env = f"ENFORCER_{self.name.upper()}_PATH"
            raise SinkError(f"sink {self.name}: no file configured (set {env})")
        return path

    def read(self, path: Path) -> tuple[dict[str, str] | None, int | None]:
        """The existing file's entries and revision; (None, None) when there is no file."""
        try:
            handle = path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None, None
        with handle:
            first = handle.readline()
            self._check_owner(path, first)
            match = re.search(r"revision (\d+)", first)
            entries: dict[str, str] = {}
            parse = self.parse
            for line in handle:
                parsed = parse(line)
                if parsed is not None:
                    entries[parsed[0]] = parsed[1]
        return entries, int(match.group(1)) if match else None

    def _check_owner(self, path: Path, first_line: str) -> None:
        if first_line and MANAGED_MARKER not in first_line:
            raise SinkError(
                f"sink {self.name}: refusing to overwrite {path}: its first line does not say "
                f"'{MANAGED_MARKER}', so it is not ours; give the sink a file of its own"
            )

    def plan(self, desired: Iterable[Indicator], revision: int, settings: Settings) -> SinkPlan:
        path = self.target(settings)
        entries, skipped = select_entries(desired, settings, passthru=self.passthru)
        existing, old_revision = self.read(path)
        old = existing if existing is not None else {}
        changes: list[SinkChange] = []
        records = self.records(settings)
        for name, kind, ind in entries:
            new = records[kind]
            before = old.pop(name, None)
            if before is None:
                changes.append(SinkChange(ChangeAction.CREATE, name, None, new, reason(ind)))
            elif before != new:
                changes.append(SinkChange(ChangeAction.UPDATE, name, before, new, reason(ind)))
        changes += (
            SinkChange(ChangeAction.DELETE, name, before, None, "no longer in the store")
            for name, before in sorted(old.items())
        )
        return SinkPlan(
            sink=self.name,
            target=str(path),
            revision=revision,
            changes=tuple(changes),
            entries=len(entries),
            rewrite=existing is None or old_revision != revision,
            skipped=tuple(skipped),
            payload=entries,
        )

    def render(self, entries: Iterable[Entry], revision: int, settings: Settings) -> Iterator[str]:
        """The whole file, line by line (a generator: a million entries never make one string)."""
        yield self.owner_line(revision)
        yield from self.preamble(revision, settings)
        lines, records = self.lines, self.records(settings)
        for name, kind, _ in entries:
            yield lines(name, kind, records[kind])

    def apply(self, plan: SinkPlan, settings: Settings) -> SinkResult:
        counts = plan.counts
        result = SinkResult(
            sink=self.name,
            target=plan.target,
            revision=plan.revision,
            created=counts[ChangeAction.CREATE],
            updated=counts[ChangeAction.UPDATE],
            deleted=counts[ChangeAction.DELETE],
        )
        if not plan.has_changes:
            return result
        path = Path(plan.target)
        # The ownership check again: the file may have been replaced since the plan.
        with contextlib.suppress(FileNotFoundError), path.open(errors="replace") as handle:
            self._check_owner(path, handle.readline())
        write_atomically(path, self.render(plan.payload, plan.revision, settings))
        error = run_reload(self.reload_command(settings), settings.sink_reload_timeout)
        return SinkResult(
            sink=result.sink,
            target=result.target,
            revision=result.revision,
            created=result.created,
            updated=result.updated,
            deleted=result.deleted,
            written=True,
            error=error,
        )


def write_atomically(path: Path, lines: Iterable[str]) -> None:
    """Replace `path` with `lines` (mode 0644): readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
            out.writelines(lines)
            out.flush()
            os.fchmod(out.fileno(), FILE_MODE)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must survive a crash too.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def run_reload(command: str, timeout: float) -> str:
    """Run a sink's reload hook (no shell); an error text, or "" when it worked or none is set."""
    if not command:
        return ""
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"file written, but the reload command failed: {exc}"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-500:]
        return f"file written, but the reload command exited {done.returncode}: {detail}"
    return ""
