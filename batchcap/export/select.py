"""Which journal line speaks for each image: the latest ``ok`` line of a path, else its latest error.

A journal is append-only and a rerun (``--retry-failed``, a resumed run) may add several lines for one path,
so one pass records only the byte offset of the line that wins per path (flat memory: no caption is kept),
and the exporters then read just those lines back, in path order, one at a time. Every line is parsed with
:func:`batchcap.journal.decode_line`; a line that is not a record is counted and skipped, and a path that
could leave its root (``../x``, ``/x``, NUL) is refused and counted: the journal is input, not trusted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchcap.export.paths import safe_relpath
from batchcap.journal import decode_line

__all__ = ["Selection", "read_records", "select"]


@dataclass(slots=True)
class Selection:
    """The winning line per path, plus what the pass saw. Offsets point at line starts in ``journal``."""

    journal: Path
    ok: dict[str, int] = field(default_factory=dict)  #: path -> offset of its latest ok line
    errors: dict[str, int] = field(default_factory=dict)  #: path -> latest error line, paths without an ok
    lines: int = 0
    bad_lines: int = 0
    first_bad_line: int | None = None  #: 1-based line number, for the message
    refused: set[str] = field(default_factory=set)  #: unsafe paths (distinct)
    bytes_sent: int = 0  #: over every line: every attempt sent its bytes
    cost_usd: float = 0.0  #: over every line: what was paid, superseded lines included (issue 18)
    costed: int = 0  #: lines that carry a cost
    ts_first: float | None = None
    ts_last: float | None = None

    def ok_items(self) -> list[tuple[str, int]]:
        """(path, offset) of every ok image, sorted by path so exports are reproducible."""
        return sorted(self.ok.items())

    def error_items(self) -> list[tuple[str, int]]:
        return sorted(self.errors.items())


def select(journal: Path, *, on_ts: Callable[[float], None] | None = None) -> Selection:
    """One streaming pass over ``journal``. Raises ``OSError`` when it cannot be read.

    ``on_ts`` is called with every record's timestamp (the report's busy time needs them all, not only the
    winners')."""
    sel = Selection(journal)
    ok, errors = sel.ok, sel.errors
    offset = 0
    with open(journal, "rb") as f:
        for number, line in enumerate(f, 1):
            start = offset
            offset += len(line)
            if not line.strip():
                continue
            sel.lines += 1
            try:
                rec = decode_line(line)
            except ValueError:
                sel.bad_lines += 1
                if sel.first_bad_line is None:
                    sel.first_bad_line = number
                continue
            path: str = rec["path"]
            if safe_relpath(path) is None:
                sel.refused.add(path)
                continue
            sent = rec.get("bytes_sent")
            if isinstance(sent, int) and sent > 0:
                sel.bytes_sent += sent
            cost = rec.get("cost_usd")
            if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
                sel.cost_usd += cost
                sel.costed += 1
            ts = rec.get("ts")
            if isinstance(ts, int | float) and ts > 0:
                if sel.ts_first is None or ts < sel.ts_first:
                    sel.ts_first = float(ts)
                if sel.ts_last is None or ts > sel.ts_last:
                    sel.ts_last = float(ts)
                if on_ts is not None:
                    on_ts(float(ts))
            if rec["status"] == "ok":
                if isinstance(rec.get("caption"), str):
                    ok[path] = start
                    errors.pop(path, None)
                else:
                    sel.bad_lines += 1
                    if sel.first_bad_line is None:
                        sel.first_bad_line = number
            elif path not in ok:
                errors[path] = start
    return sel


def read_records(journal: Path, items: list[tuple[str, int]]) -> Iterator[dict[str, Any]]:
    """The records at the given offsets, in the given order (one seek and one line each)."""
    with open(journal, "rb") as f:
        for _path, offset in items:
            f.seek(offset, os.SEEK_SET)
            yield decode_line(f.readline())
