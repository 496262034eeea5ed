"""Append-only dataset store: crash-safe batches, resumable collection.

One CSV file per dataset. The first line is a ``# oplat-dataset v<N> <json meta>``
header (machine facts, backend, settings); the second the column names. Rows are
appended in batches with a single ``write`` on an ``O_APPEND`` descriptor followed by
``fsync``; a failed write (disk full) truncates the file back to where the batch began.
Every row carries a CRC32 of its other fields, so a row torn by a kill or a corrupted
byte is recognised: readers skip such lines and never change the file; the writer
(``repair=True``, as ``oplat collect`` opens it) drops only those lines, keeps every valid
row before and after them, and keeps a copy of the original first. Each row has a
``config_id``: collection skips ids already present, which makes any run resumable by
simply starting it again with the same arguments.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import DatasetError
from .outputs import atomic_write_bytes

STORE_VERSION = 1
HEADER_PREFIX = "# oplat-dataset v"
MAX_HEADER_BYTES = 1 << 20  # a header line longer than this is not one


_SEP = "\x1f"


def _crc(fields: Sequence[str]) -> str:
    return "%08x" % (zlib.crc32(_SEP.join(fields).encode()) & 0xFFFFFFFF)


class DatasetStore:
    """A dataset file with a fixed column list; ``append`` is atomic per batch."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None,
                 meta: dict[str, Any] | None = None, repair: bool = False) -> None:
        """Open the dataset at ``path`` (created with ``columns`` and ``meta`` when it does not
        exist). Only a writer passes ``repair=True``: lines that fail their checksum and a
        torn tail are then dropped (see :meth:`repair`; what was done is in
        ``repair_report``); a reader never changes the file."""
        self.path = Path(path)
        self.repair_report: str | None = None
        if self.path.exists() and not self.path.is_file():
            raise DatasetError(f"{self.path} is not a regular file")
        if self.path.exists() and self.path.stat().st_size > 0:
            self.meta, self.columns = self._read_header()
            if columns is not None and list(columns) != self.columns:
                raise DatasetError(f"{self.path}: columns differ from the existing dataset "
                                   f"({', '.join(self.columns)})")
            if repair:
                self.repair_report = self.repair()
        else:
            if columns is None:
                raise DatasetError(f"dataset not found: {self.path}")
            self.columns = list(columns)
            self.meta = dict(meta or {})
            self._create()

    # file layout -------------------------------------------------------------------
    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        buf.write(f"{HEADER_PREFIX}{STORE_VERSION} {json.dumps(self.meta, sort_keys=True)}\n")
        csv.writer(buf, lineterminator="\n").writerow(list(self.columns) + ["crc"])
        atomic_write_bytes(self.path, buf.getvalue().encode())

    def _read_header(self) -> tuple[dict[str, Any], list[str]]:
        """Meta and columns; a DatasetError (the file untouched) when they cannot be parsed."""
        bad = DatasetError(f"{self.path}: not an oplat dataset, or its header is damaged (left untouched)")
        with open(self.path, "rb") as f:
            first = f.readline(MAX_HEADER_BYTES)
            second = f.readline(MAX_HEADER_BYTES)
        try:
            first_s, second_s = first.decode("utf-8"), second.decode("utf-8")
        except UnicodeDecodeError:
            raise bad from None
        if not first_s.startswith(HEADER_PREFIX) or not first_s.endswith("\n") or not second_s.endswith("\n"):
            raise bad
        version, _, meta = first_s[len(HEADER_PREFIX):].partition(" ")
        if version != str(STORE_VERSION):
            raise DatasetError(f"{self.path}: dataset format v{version[:20]}, this oplat reads v{STORE_VERSION}")
        cols = next(csv.reader([second_s.rstrip("\n")]), [])
        if not cols or cols[-1] != "crc":
            raise bad
        try:
            meta_d = json.loads(meta or "{}")
        except ValueError:
            raise bad from None
        if not isinstance(meta_d, dict):
            raise bad
        return meta_d, cols[:-1]

    # integrity ---------------------------------------------------------------------
    def _scan(self, data: bytes | None = None) -> tuple[list[dict[str, str]], list[tuple[int, int, int]], int]:
        """Valid rows; the (line number, start, end) byte spans of lines that fail their
        checksum; the bytes of a torn tail (a last line without its newline). ``data``: the
        file's bytes when the caller has read them already."""
        rows: list[dict[str, str]] = []
        bad: list[tuple[int, int, int]] = []
        if data is None:
            with open(self.path, "rb") as f:
                data = f.read()
        pos = data.index(b"\n") + 1
        pos = data.index(b"\n", pos) + 1
        line_no = 2
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                return rows, bad, len(data) - pos  # torn last line
            line_no += 1
            fields = None
            try:
                fields = next(csv.reader([data[pos:nl].decode("utf-8")]))
            except (UnicodeDecodeError, csv.Error, StopIteration):
                pass
            if fields is not None and len(fields) == len(self.columns) + 1 and _crc(fields[:-1]) == fields[-1]:
                rows.append(dict(zip(self.columns, fields[:-1])))
            else:
                bad.append((line_no, pos, nl + 1))
            pos = nl + 1
        return rows, bad, 0

    def damage(self) -> tuple[int, int]:
        """(lines that fail their checksum, bytes of a torn tail): what readers skip."""
        _, bad, torn = self._scan()
        return len(bad), torn

    def repair(self) -> str | None:
        """Drop what is provably broken (lines that fail their checksum, a torn tail) and
        keep every valid row, before and after them; a copy of the original is kept first
        (``<file>.bak-<time>``). Returns one line saying what was dropped and where the copy
        is, or None when nothing was wrong (the file is then not touched)."""
        with open(self.path, "rb") as f:
            data = f.read()
        _, bad, torn = self._scan(data)
        if not bad and not torn:
            return None
        backup = self.path.with_name(f"{self.path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while backup.exists():
            backup = backup.with_name(f"{self.path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
            n += 1
        shutil.copy2(self.path, backup)
        keep, pos = [], 0
        for _, start, end in bad:
            keep.append(data[pos:start])
            pos = end
        keep.append(data[pos:len(data) - torn])
        atomic_write_bytes(self.path, b"".join(keep))
        what = []
        if bad:
            lines = ", ".join(str(b[0]) for b in bad[:5]) + (", ..." if len(bad) > 5 else "")
            what.append(f"{len(bad)} corrupted line(s) (line {lines})")
        if torn:
            what.append(f"a torn last line ({torn} bytes)")
        return f"{self.path}: dropped {' and '.join(what)}; every other row kept; the original is {backup}"

    # api ---------------------------------------------------------------------------
    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append rows atomically as one batch; returns how many were written."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        n = 0
        for r in rows:
            fields = ["" if r.get(c) is None else (json.dumps(r[c], sort_keys=True)
                                                    if isinstance(r[c], (dict, list)) else str(r[c]))
                      for c in self.columns]
            w.writerow(fields + [_crc(fields)])
            n += 1
        if not n:
            return 0
        data = buf.getvalue().encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # a torn last line left by a crash (a reader opened it, nobody repaired it):
                # it stays a line of its own, and every new row stays whole
                data = b"\n" + data
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # all of the batch or none of it (disk full, ...)
                os.fsync(fd)
                raise
        finally:
            os.close(fd)
        return n

    def rows(self) -> list[dict[str, str]]:
        """Every valid row, as strings keyed by column (damaged lines skipped: :meth:`damage`)."""
        return self._scan()[0]

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(self.rows())

    def done_ids(self, column: str = "config_id") -> set[str]:
        """Values of ``column`` already stored (what a resumed collection skips)."""
        return {r[column] for r in self.rows()}
