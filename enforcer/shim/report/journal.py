"""The reporter's write-ahead journal: each event reaches the kernel before its answer leaves.

The spool (SQLite) takes events in batches every half second, because a transaction per event
would cost more than the DNS answer itself. Events waiting for that flush used to live only in
memory, so `kill -9` (or any crash) lost up to half a second of them. Now `Reporter.on_event`
also appends the event, already serialised, as one line ``SEQ<TAB>JSON`` to the current
journal segment with a single ``write(2)`` (about 2 µs): once the call returns, the line is in
the kernel's page cache and survives the death of the process (not a power cut, like the
spool's own ``synchronous=NORMAL``).

Segments (``journal/NNNNNNNNNNNN.seg`` in the state directory) rotate at every flush: the
flusher closes the current one and opens the next, so a segment holds only events that are
now on their way to the spool. Once the spool has committed them -- with the sequence number
of the last one, in the same transaction (`Spool.journal_seq`) -- the segments up to it are
deleted. At start, `replay` returns the events of the remaining segments whose sequence number
is above the spool's: each event reaches the spool exactly once, whether the process died
before, during or after a flush.

While a DNS listener answers the datagrams of one event-loop pass, the reporter holds their
events (`Reporter.hold`) and writes them with one ``write(2)`` (`Journal.write_many`,
`Reporter.commit`) before the first of those answers is sent: one system call per pass instead
of one per event, and still no answer before its event is in the journal.

A failed write (a full disk) is undone (the segment is cut back to its last whole line) and
reported to the caller, which keeps the event in memory: a journal never holds half a line
followed by more events.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

SUFFIX = ".seg"


class Journal:
    """Append-only segments of serialised events, numbered by a sequence the reporter keeps."""

    def __init__(self, directory: Path, *, held_until: int = 0) -> None:
        """Open a new segment after those in `directory`, which are kept until the spool holds
        every sequence number up to `held_until` (their events were replayed, see `replay`)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        existing = [n for n, _ in _segments(directory)]
        self._closed: list[tuple[int, int]] = [(n, held_until) for n in existing]
        """Rotated segments still needed: (number, last sequence number written to it)."""
        self._number = max(existing, default=0) + 1
        self._fd = self._create(self._number)
        self._size = 0
        self._last = 0

    def _create(self, number: int) -> int:
        path = self.directory / f"{number:012d}{SUFFIX}"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)

    def write(self, seq: int, body: str) -> bool:
        """Append one event; False (nothing written) when the disk refused it."""
        line = f"{seq}\t{body}\n".encode()
        try:
            written = os.write(self._fd, line)
        except OSError:
            written = 0
        if written == len(line):
            self._size += written
            self._last = seq
            return True
        with contextlib.suppress(OSError):  # a short write: cut back to the last whole line
            os.ftruncate(self._fd, self._size)
        return False

    def write_many(self, lines: Sequence[tuple[int, str]]) -> bool:
        """Append several events with one ``write(2)``; False (nothing written) when the disk
        refused it. The events of one event-loop pass go out this way, before their answers."""
        if not lines:
            return True
        data = "".join([f"{seq}\t{body}\n" for seq, body in lines]).encode()
        try:
            written = os.write(self._fd, data)
        except OSError:
            written = 0
        if written == len(data):
            self._size += written
            self._last = lines[-1][0]
            return True
        with contextlib.suppress(OSError):  # a short write: cut back to the last whole line
            os.ftruncate(self._fd, self._size)
        return False

    def rotate(self) -> None:
        """Start a new segment; the current one is kept until `release` covers it. When no
        new file can be made (a full disk), writing goes on in the current one."""
        if self._size == 0:
            return
        try:
            fd = self._create(self._number + 1)
        except OSError:
            return
        self._closed.append((self._number, self._last))
        os.close(self._fd)
        self._fd, self._number, self._size, self._last = fd, self._number + 1, 0, 0

    def release(self, seq: int) -> None:
        """Delete the rotated segments whose events all are in the spool (up to `seq`)."""
        keep = []
        for number, last in self._closed:
            if last <= seq:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{number:012d}{SUFFIX}").unlink()
            else:
                keep.append((number, last))
        self._closed = keep

    def close(self) -> None:
        """Close the current segment (its events, if any, are replayed at the next start)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"*{SUFFIX}"):
        with contextlib.suppress(ValueError):
            found.append((int(path.stem), path))
    return sorted(found)


def replay(directory: Path, after: int) -> Iterator[tuple[int, str]]:
    """(seq, body) of every whole journal line with a sequence number above `after`, in order.

    A line cut short by a crash in the middle of a write, or damaged, is skipped.
    """
    for _, path in _segments(directory):
        with path.open("rb") as segment:
            for raw in segment:
                if not raw.endswith(b"\n"):
                    continue
                seq_text, tab, body = raw[:-1].partition(b"\t")
                if not tab or not seq_text.isdigit():
                    continue
                seq = int(seq_text)
                if seq > after:
                    try:
                        yield seq, body.decode()
                    except UnicodeDecodeError:
                        continue
