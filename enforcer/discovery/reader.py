"""Streaming a log file into lines, whatever its size, gzip or not, and whatever its content.

Uploaded logs can be tens of gigabytes, so nothing here reads a whole file: lines come from a
buffered binary stream (constant memory), gzip is recognised by its magic bytes rather than the
file name (rotated logs are often ``access.log.1.gz`` or have no suffix at all), and undecodable
bytes become U+FFFD instead of failing the upload (the line is then reported by its parser if it
matters); a UTF-8 byte order mark (Windows exports) is dropped.

Hostile files are bounded (`ReadLimits`): a line longer than ``max_line`` bytes is never held in
memory (a 4 MB gzip file can expand to one 4 GB line), it is skipped and reported as a bad line;
a gzip file that expands to more than ``max_expansion`` times its own size (real logs compress
about 10 times, a decompression bomb 1,000 times) is read up to that size and the rest is
reported as one bad line. Truncated or damaged gzip data is a `FormatError` naming where it
stopped, not a traceback.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from enforcer.config import Settings
from enforcer.discovery.formats import parser_for
from enforcer.discovery.records import BadLine, FormatError, Record, bad_line

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
BUFFER = 1 << 20
CHUNK = 1 << 16
"""Bytes read at a time (at most the line limit + 1, see `_Capped`)."""
EXPANSION_SLACK = 1 << 20
"""Bytes a gzip file may always expand to, whatever its size (a tiny file of a few lines)."""


@dataclass(frozen=True)
class ReadLimits:
    """How much of a log file is read (``ENFORCER_DISCOVERY_MAX_LINE``, ``..._MAX_EXPANSION``)."""

    max_line: int = 65_536
    """Longest line read, in bytes; a longer one is a bad line."""
    max_expansion: float = 100.0
    """A gzip file is read up to this many times its own size; the rest is a bad line."""

    @classmethod
    def of(cls, settings: Settings) -> ReadLimits:
        """The limits the settings name."""
        return cls(settings.discovery_max_line, settings.discovery_max_expansion)


Refuse = Callable[[BadLine], None]
"""Told about each part of a file that was not read (a line too long, the rest of a bomb)."""


def open_lines(
    path: Path, limits: ReadLimits | None = None, on_refused: Refuse | None = None
) -> Iterator[str]:
    """The lines of `path` (ending in ``\\n`` except perhaps the last), decompressed if gzip.

    A line longer than the limit is passed on as an empty line (so that line numbers stay
    right) and reported to `on_refused`, as is the rest of a gzip file past its expansion limit.

    The lines come from a `io.TextIOWrapper` (decoding and splitting in C, as fast as reading
    a text file gets) over `_Capped`, which enforces the limits a chunk at a time: no Python
    runs per line here (a per-line ``readline`` and ``decode`` cost an upload 10%).
    """
    limits = limits or ReadLimits()
    refuse = on_refused or (lambda _: None)
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] != GZIP_MAGIC:
            yield from _text(_Capped(raw, limits.max_line, None, refuse, ""))
            return
        size = Path(path).stat().st_size
        budget = int(size * limits.max_expansion) + EXPANSION_SLACK
        # GzipFile buffers a little itself: a bigger buffer in front would lose the lines
        # before the damage of a truncated file.
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        yield from _text(_Capped(gz, limits.max_line, budget, refuse, "the gzip data "))


def _text(capped: _Capped) -> io.TextIOWrapper[_Capped]:
    # "utf-8-sig" drops a byte order mark at the start only; newline="\n" splits on LF alone
    # and keeps a CR for the parser.
    text = io.TextIOWrapper(capped, encoding="utf-8-sig", errors="replace", newline="\n")
    text._CHUNK_SIZE = CHUNK  # type: ignore[attr-defined]  # 8 KiB by default: more calls
    return text


class _Capped(io.BufferedIOBase):
    """A binary stream of whole lines that holds no line longer than `max_line` bytes: such a
    line is read past and given as a bare newline (reported to `refuse`), and with a
    `budget` the stream ends before the line that would take it past that many bytes.

    Each read takes a chunk of at most ``max_line + 1`` bytes from `source`, so a line wholly
    inside a chunk is within the limit; only the line that began in an earlier chunk (kept
    in `pending`, never longer than the limit) needs a check.
    """

    def __init__(
        self,
        source: io.BufferedIOBase,
        max_line: int,
        budget: int | None,
        refuse: Refuse,
        what: str,
    ) -> None:
        super().__init__()
        self.source, self.max_line, self.budget = source, max_line, budget
        self.refuse, self.what = refuse, what
        self.pending = b""
        """The start of a line whose end is not read yet."""
        self.offset = 0
        """Bytes taken from `source`: where `pending` ends."""
        self.lines = 0
        """Lines given out so far (to number the ones refused)."""
        self.done = False

    @property
    def name(self) -> str:
        return str(getattr(self.source, "name", ""))

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self.read1(size)

    def read1(self, size: int | None = -1) -> bytes:
        """Some whole lines (the last line of the file perhaps without its newline); b"" at
        the end."""
        limit = self.max_line
        chunk_size = min(size, limit + 1) if size and size > 0 else limit + 1
        while not self.done:
            try:
                chunk = self.source.read1(chunk_size)
            except (OSError, EOFError, zlib.error) as exc:
                raise FormatError(
                    f"cannot read: {self.what}is truncated or damaged after line "
                    f"{self.lines} ({exc})",
                    line=self.lines + 1,
                ) from None
            if not chunk:
                self.done = True
                out, self.pending = self.pending, b""
                return self._give(out)
            start = self.offset - len(self.pending)
            self.offset += len(chunk)
            data = self.pending + chunk if self.pending else chunk
            if self.budget is not None and self.offset > self.budget:
                return self._over_budget(data, start)
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > limit:
                    return self._too_long(data, ended=False)
                self.pending = data
                continue
            self.pending = data[cut + 1 :]
            first = data.find(b"\n")
            if first > limit:
                return self._too_long(data[: first + 1], ended=True) + self._give(
                    data[first + 1 : cut + 1]
                )
            return self._give(data[: cut + 1])
        return b""

    def _give(self, out: bytes) -> bytes:
        self.lines += out.count(b"\n")
        return out

    def _too_long(self, start: bytes, ended: bool) -> bytes:
        """A newline for the line beginning `start`, which is too long; `ended`: whether
        `start` holds its end (else the rest is read past here, within the budget)."""
        self.lines += 1
        over = False
        if not ended:
            self.pending = b""
            left = None if self.budget is None else self.budget - self.offset
            self.offset += _skip_line(self.source, left)
            over = self.budget is not None and self.offset > self.budget
        text = start[:200].decode("utf-8", "replace")
        self.refuse(bad_line(self.lines, f"line longer than {self.max_line} bytes: not read", text))
        if over:
            self._bomb(self.lines)
            return b""
        return b"\n"

    def _over_budget(self, data: bytes, start: int) -> bytes:
        """The lines of `data` (which begins `start` bytes into the file) that end within the
        budget, then the end of the stream."""
        assert self.budget is not None
        cut = data.rfind(b"\n", 0, max(0, self.budget - start))
        self.pending = b""
        out = self._give(data[: cut + 1])
        self._bomb(self.lines + 1)
        return out

    def _bomb(self, line_no: int) -> None:
        self.done = True
        self.refuse(
            bad_line(
                line_no,
                f"the file expands to more than {self.budget:,} bytes (a decompression bomb?): "
                "the rest was not read",
                "",
            )
        )


def _skip_line(binary: io.BufferedIOBase, budget: int | None) -> int:
    """Read past the rest of the current line without keeping it; returns the bytes read
    (stopping early once past `budget`)."""
    skipped = 0
    while budget is None or skipped <= budget:
        piece = binary.readline(BUFFER)
        skipped += len(piece)
        if not piece or piece.endswith(b"\n"):
            break
    return skipped


def parse_file(
    path: Path, format_name: str, mapping: str | None = None, limits: ReadLimits | None = None
) -> Iterator[Record | BadLine]:
    """`open_lines` through the format's parser (the parts not read as bad lines); a
    `FormatError` names the file."""
    parse = parser_for(format_name, mapping)
    refused: list[BadLine] = []
    try:
        for item in parse(open_lines(path, limits, refused.append)):
            yield from refused
            refused.clear()
            yield item
        yield from refused
    except FormatError as exc:
        raise exc.with_file(str(path)) from None
    except OSError as exc:  # an unreadable file
        raise FormatError(f"cannot read: {exc}", file=str(path)) from None
