"""Progress over all workers: each worker's ``RemoteProgress`` adds to one ``ProgressHub`` actor; the driver polls.

Workers report in batches (at most every 0.25 s, and on close), so a fast run costs a few actor calls per
second, not one per image.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ProgressHub", "RemoteProgress"]

_FLUSH_EVERY = 0.25


class ProgressHub:
    """The job's counters (run as a Ray actor). ``take`` hands the driver what arrived since its last call."""

    def __init__(self) -> None:
        self._found = self._ok = self._failed = 0
        self._note = ""

    def add(self, found: int, ok: int, failed: int, note: str) -> None:
        self._found += found
        self._ok += ok
        self._failed += failed
        if note:
            self._note = note

    def take(self) -> tuple[int, int, int, str]:
        got = (self._found, self._ok, self._failed, self._note)
        self._found = self._ok = self._failed = 0
        self._note = ""
        return got


class RemoteProgress:
    """A ``batchcap.progress.Progress`` for a worker: counts locally, sends to the hub in batches."""

    __slots__ = ("_failed", "_found", "_hub", "_last", "_note", "_ok", "_prefix")

    def __init__(self, hub: Any, prefix: str = "") -> None:
        self._hub = hub
        self._prefix = prefix
        self._found = self._ok = self._failed = 0
        self._note = ""
        self._last = time.monotonic()

    def found(self, n: int) -> None:
        self._found += n
        self._maybe_flush()

    def done(self, ok: int, failed: int) -> None:
        self._ok += ok
        self._failed += failed
        self._maybe_flush()

    def note(self, text: str) -> None:
        self._note = f"{self._prefix}{text}"
        self._maybe_flush()

    def concurrency(self, text: str) -> None:
        """Each worker's adaptive concurrency is its own; the job's progress line does not show it."""

    def close(self) -> None:
        self._flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        self._last = time.monotonic()
        if self._found or self._ok or self._failed or self._note:
            self._hub.add.remote(self._found, self._ok, self._failed, self._note)
            self._found = self._ok = self._failed = 0
            self._note = ""
