"""Throughput, defined once: images recorded per second of busy time (issue 21).

Busy time is the time ``batchcap run`` invocations were running: the union of their ``[start, start +
elapsed]`` windows. One invocation: its elapsed time, start-up included. An interrupt at night and a resume in
the morning: both runs, not the night between them. Shards run side by side and merged: the time any of them
ran. Images are the records written (captions and error records; images already done are not counted again).

The run summary (one invocation), the run manifest (every invocation that wrote the journal, carried from one
manifest to the next) and the report's header all use this one definition, so they agree::

    Throughput.of([Invocation(started_at=1000.0, elapsed_s=10.0, images=500)]).per_s   # 50.0

An invocation that never finished (``kill -9``, a power cut) has no elapsed time in its manifest; the report
fills it in from the journal's own timestamps (``Invocation.observed``), the manifest leaves it out.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

__all__ = ["DEFINITION", "MAX_INVOCATIONS", "Completion", "Invocation", "Throughput", "Timeline", "images_per_s"]

#: What the number means, in the words the report's tooltip and the manifest use.
DEFINITION = (
    "images recorded (captions and error records) per second of busy time: the time the batchcap run "
    "invocations that wrote this journal were running, start-up included; the time between them (after an "
    "interrupt, before a resume) is not counted"
)
#: The invocations a manifest keeps one by one; older ones are folded into the first entry (counts and times kept).
MAX_INVOCATIONS = 100


def images_per_s(images: int, busy_s: float) -> float:
    """The one formula: images over busy seconds (0 when nothing ran)."""
    return images / busy_s if busy_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Invocation:
    """One ``batchcap run`` on a journal: when it started (wall clock), how long it ran, what it recorded.

    ``elapsed_s`` and ``images`` are None for one that never finished; ``folded`` counts the invocations an
    entry stands for (more than 1 once a manifest has folded its oldest ones together).
    """

    started_at: float
    elapsed_s: float | None = None
    images: int | None = None
    folded: int = 1

    @property
    def finished(self) -> bool:
        return self.elapsed_s is not None and self.images is not None

    @property
    def ended_at(self) -> float | None:
        return None if self.elapsed_s is None else self.started_at + self.elapsed_s

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"started_at": self.started_at, "elapsed_s": self.elapsed_s, "images": self.images}
        if self.folded != 1:
            out["folded"] = self.folded
        return out

    @classmethod
    def from_json(cls, raw: object) -> Invocation | None:
        """Read one back from a manifest (JSON is input: anything malformed is None, never an exception)."""
        if not isinstance(raw, dict):
            return None
        start, elapsed, images, folded = (raw.get(k) for k in ("started_at", "elapsed_s", "images", "folded"))
        if not _number(start) or (elapsed is not None and not (_number(elapsed) and elapsed >= 0)):
            return None
        if images is not None and not (isinstance(images, int) and not isinstance(images, bool) and images >= 0):
            return None
        folded = folded if isinstance(folded, int) and not isinstance(folded, bool) and folded >= 1 else 1
        return cls(float(start), None if elapsed is None else float(elapsed), images, folded)

    @classmethod
    def from_manifest(cls, manifest: object) -> list[Invocation]:
        """The invocations a run manifest records; a manifest from before they were kept gives its one run."""
        if not isinstance(manifest, dict):
            return []
        listed = manifest.get("invocations")
        if isinstance(listed, list):
            return [inv for raw in listed if (inv := cls.from_json(raw)) is not None]
        counts = manifest.get("counts")
        images = None
        if isinstance(counts, dict) and isinstance(counts.get("ok"), int) and isinstance(counts.get("failed"), int):
            images = counts["ok"] + counts["failed"]
        old = cls.from_json({"started_at": manifest.get("started_at"), "elapsed_s": manifest.get("elapsed_s"),
                             "images": images})
        return [] if old is None else [old if old.finished else replace(old, elapsed_s=None, images=None)]

    @staticmethod
    def fold(invocations: Sequence[Invocation], keep: int = MAX_INVOCATIONS) -> list[Invocation]:
        """At most ``keep`` entries: the oldest finished ones become one (their busy time and images summed)."""
        if len(invocations) <= keep:
            return list(invocations)
        cut = len(invocations) - keep + 1
        old, rest = invocations[:cut], invocations[cut:]
        known = [inv for inv in old if inv.finished]
        first = Invocation(
            started_at=old[0].started_at,
            elapsed_s=sum(inv.elapsed_s or 0.0 for inv in known),
            images=sum(inv.images or 0 for inv in known),
            folded=sum(inv.folded for inv in old),
        )
        return [first, *rest]

    def observed(self, last_ts: float | None, images: int) -> Invocation:
        """An unfinished one completed from the journal: it ran until its last record, and wrote ``images``."""
        if self.finished:
            return self
        elapsed = max(0.0, last_ts - self.started_at) if last_ts is not None else 0.0
        return replace(self, elapsed_s=elapsed, images=images)


@dataclass(frozen=True, slots=True)
class Throughput:
    """The numbers the summary, the manifest and the report show: ``images`` in ``busy_s``, ``per_s``."""

    images: int
    busy_s: float
    invocations: int

    @property
    def per_s(self) -> float:
        return images_per_s(self.images, self.busy_s)

    @classmethod
    def of(cls, invocations: Iterable[Invocation]) -> Throughput:
        """Over the finished invocations: their images, and the union of their running windows."""
        done = [inv for inv in invocations if inv.finished]
        return cls(
            images=sum(inv.images or 0 for inv in done),
            busy_s=Timeline.of(done).busy_s,
            invocations=sum(inv.folded for inv in done),
        )

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "busy_s": round(self.busy_s, 3), "images_per_s": round(self.per_s, 6),
                "invocations": self.invocations, "definition": DEFINITION}


@dataclass(frozen=True, slots=True)
class Timeline:
    """Busy time as one axis: the union of running windows, the gaps between them cut out.

    ``offset(ts)`` places a wall-clock timestamp on that axis, so a chart over a resumed run shows the two runs
    side by side instead of a night of empty bars between them.
    """

    windows: tuple[tuple[float, float], ...]  #: (start, end), sorted, disjoint

    @classmethod
    def of(cls, invocations: Iterable[Invocation]) -> Timeline:
        spans = sorted((inv.started_at, inv.started_at + (inv.elapsed_s or 0.0)) for inv in invocations)
        merged: list[tuple[float, float]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return cls(tuple(merged))

    @property
    def busy_s(self) -> float:
        return sum(end - start for start, end in self.windows)

    def offset(self, ts: float) -> float:
        """Busy seconds before ``ts``: a time in a gap maps to the end of the window before it."""
        before = 0.0
        for start, end in self.windows:
            if ts < start:
                return before
            if ts <= end:
                return before + (ts - start)
            before += end - start
        return before


class Completion:
    """Completes the invocations that never finished from the journal: each ran until the last record stamped
    before the next one started, and wrote the records stamped in between. Fed one timestamp at a time."""

    __slots__ = ("_count", "_last", "_runs", "_starts")

    def __init__(self, invocations: Iterable[Invocation]) -> None:
        self._runs = sorted(invocations, key=lambda inv: inv.started_at)
        self._starts = [inv.started_at for inv in self._runs]
        self._last: list[float | None] = [None] * len(self._runs)
        self._count = [0] * len(self._runs)

    @property
    def needed(self) -> bool:
        return any(not inv.finished for inv in self._runs)

    def observe(self, ts: float) -> None:
        i = bisect_right(self._starts, ts) - 1
        if i >= 0 and not self._runs[i].finished:
            self._count[i] += 1
            last = self._last[i]
            self._last[i] = ts if last is None or ts > last else last

    def invocations(self) -> list[Invocation]:
        return [inv.observed(last, n) for inv, last, n in zip(self._runs, self._last, self._count, strict=True)]


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
