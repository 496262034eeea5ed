"""Append-only dataset store: crash-safe batches, resumable collection.

One CSV file per dataset. The first line is a ``# oplat-dataset v<N> <json meta>``
header (machine facts, backend, settings); the second the column names. Rows are
appended in batches with a single ``write`` on an ``O_APPEND`` descriptor followed by
``fsync``; a failed write (disk full) truncates the file back to where the batch began.
Every row carries a CRC32 of its other fields, so a row torn by a kill is recognised on
the next open and cut off (``repair``). Each row has a
``config_id``: collection skips ids already present, which makes any run resumable by
simply starting it again with the same arguments.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import DatasetError

STORE_VERSION = 1
HEADER_PREFIX = "# oplat-dataset v"


_SEP = "\x1f"


def _crc(fields: Sequence[str]) -> str:
    return "%08x" % (zlib.crc32(_SEP.join(fields).encode()) & 0xFFFFFFFF)


class DatasetStore:
    """A dataset file with a fixed column list; ``append`` is atomic per batch."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.stat().st_size > 0:
            self.meta, self.columns = self._read_header()
            if columns is not None and list(columns) != self.columns:
                raise DatasetError(f"{self.path}: columns differ from the existing dataset "
                                   f"({', '.join(self.columns)})")
            self.repair()
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
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def _read_header(self) -> tuple[dict[str, Any], list[str]]:
        with open(self.path, newline="") as f:
            first = f.readline()
            second = f.readline()
        if not first.startswith(HEADER_PREFIX) or not second.endswith("\n"):
            raise DatasetError(f"{self.path}: not an oplat dataset (bad header)")
        version, _, meta = first[len(HEADER_PREFIX):].partition(" ")
        if int(version) != STORE_VERSION:
            raise DatasetError(f"{self.path}: dataset format v{version}, this oplat reads v{STORE_VERSION}")
        cols = next(csv.reader([second]))
        if not cols or cols[-1] != "crc":
            raise DatasetError(f"{self.path}: not an oplat dataset (no crc column)")
        return json.loads(meta or "{}"), cols[:-1]

    # integrity ---------------------------------------------------------------------
    def _scan(self) -> tuple[list[dict[str, str]], int]:
        """Valid rows and the byte offset where valid data ends."""
        rows: list[dict[str, str]] = []
        with open(self.path, "rb") as f:
            data = f.read()
        pos = data.index(b"\n") + 1
        pos = data.index(b"\n", pos) + 1
        good_end = pos
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn last line
            line = data[pos:nl].decode("utf-8", errors="replace")
            try:
                fields = next(csv.reader([line]))
            except (csv.Error, StopIteration):
                break
            if len(fields) != len(self.columns) + 1 or _crc(fields[:-1]) != fields[-1]:
                break
            rows.append(dict(zip(self.columns, fields[:-1])))
            pos = nl + 1
            good_end = pos
        return rows, good_end

    def repair(self) -> int:
        """Cut off a torn tail left by a crash; returns the bytes removed."""
        _, end = self._scan()
        size = self.path.stat().st_size
        if end < size:
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        return size - end

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
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
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
        """Every valid row, as strings keyed by column."""
        return self._scan()[0]

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(self.rows())

    def done_ids(self, column: str = "config_id") -> set[str]:
        """Values of ``column`` already stored (what a resumed collection skips)."""
        return {r[column] for r in self.rows()}
