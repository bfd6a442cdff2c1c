"""Which journal line speaks for each answer: per image and task, the latest ``ok`` line, else its latest error.

A journal is append-only and a rerun (``--retry-failed``, a resumed run, a changed prompt) may add several lines
for one (path, task), so one pass records only the byte offset of the line that wins per (path, task) (flat
memory: no caption is kept), the task names in the order met, and per schema task the top-level fields its
answers' ``data`` has (for ``NAME.FIELD`` columns),
and the exporters then read just those lines back, in path order, one at a time. Every line is parsed with
:func:`batchcap.journal.decode_line`; a line that is not a record is counted and skipped, and a path that
could leave its root (``../x``, ``/x``, NUL) is refused and counted: the journal is input, not trusted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchcap.export.paths import safe_relpath
from batchcap.journal import decode_line
from batchcap.journal.codec import record_task

__all__ = ["MAX_FIELDS", "Answer", "Selection", "read_records", "select"]

#: (path, task): the key of one answer.
Answer = tuple[str, str]
#: Top-level fields of a schema task's data kept as columns (more are left in the task's own JSON column).
MAX_FIELDS = 64


@dataclass(slots=True)
class Selection:
    """The winning line per (path, task), plus what the pass saw. Offsets point at line starts in ``journal``."""

    journal: Path
    ok: dict[Answer, int] = field(default_factory=dict)  #: (path, task) -> offset of its latest ok line
    errors: dict[Answer, int] = field(default_factory=dict)  #: latest error line, answers without an ok
    tasks: list[str] = field(default_factory=list)  #: task names in the order first met
    fields: dict[str, list[str]] = field(default_factory=dict)  #: schema task -> top-level data fields met
    lines: int = 0
    bad_lines: int = 0
    first_bad_line: int | None = None  #: 1-based line number, for the message
    refused: set[str] = field(default_factory=set)  #: unsafe paths (distinct)
    bytes_sent: int = 0  #: over every line: every attempt sent its bytes
    cost_usd: float = 0.0  #: over every line: what was paid, superseded lines included (issue 18)
    costed: int = 0  #: lines that carry a cost
    ts_first: float | None = None
    ts_last: float | None = None

    def ok_items(self) -> list[tuple[Answer, int]]:
        """((path, task), offset) of every ok answer, sorted by path then task so exports are reproducible."""
        return sorted(self.ok.items())

    def error_items(self) -> list[tuple[Answer, int]]:
        return sorted(self.errors.items())

    def ok_images(self) -> list[tuple[str, list[tuple[str, int]]]]:
        """Per image with at least one ok answer, in path order: [(task, offset)] in the order of ``tasks``."""
        order = {t: i for i, t in enumerate(self.tasks)}
        by_path: dict[str, list[tuple[str, int]]] = {}
        for (path, task), offset in self.ok.items():
            by_path.setdefault(path, []).append((task, offset))
        return [(path, sorted(by_path[path], key=lambda t: order.get(t[0], 0))) for path in sorted(by_path)]

    @property
    def images(self) -> int:
        """Distinct images with an ok answer."""
        return len({path for path, _ in self.ok})


def select(journal: Path, *, on_ts: Callable[[float], None] | None = None) -> Selection:
    """One streaming pass over ``journal``. Raises ``OSError`` when it cannot be read.

    ``on_ts`` is called with every record's timestamp (the report's busy time needs them all, not only the
    winners')."""
    sel = Selection(journal)
    ok, errors = sel.ok, sel.errors
    seen_tasks: set[str] = set()
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
            task = record_task(rec)
            if task not in seen_tasks:
                seen_tasks.add(task)
                sel.tasks.append(task)
            key = (path, task)
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
                    ok[key] = start
                    errors.pop(key, None)
                    data = rec.get("data")
                    if isinstance(data, dict):
                        known = sel.fields.setdefault(task, [])
                        for name in data:
                            if name not in known and len(known) < MAX_FIELDS:
                                known.append(name)
                else:
                    sel.bad_lines += 1
                    if sel.first_bad_line is None:
                        sel.first_bad_line = number
            elif key not in ok:
                errors[key] = start
    return sel


def read_records(journal: Path, items: Iterable[tuple[Any, int]]) -> Iterator[dict[str, Any]]:
    """The records at the given offsets, in the given order (one seek and one line each)."""
    with open(journal, "rb") as f:
        for _path, offset in items:
            f.seek(offset, os.SEEK_SET)
            yield decode_line(f.readline())
