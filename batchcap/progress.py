"""Progress display. The pipeline talks to a Progress; the CLI picks tqdm or nothing."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

__all__ = ["NullProgress", "Progress", "TqdmProgress"]


class Progress(Protocol):
    """Updated in batches by the single writer task, never per request from many tasks."""

    def found(self, n: int) -> None:
        """The scanner found ``n`` more images still to do (the total grows while the scan streams)."""

    def done(self, ok: int, failed: int) -> None:
        """``ok`` + ``failed`` more images are journaled."""

    def note(self, text: str) -> None:
        """A short status (``paused 12 s: rate limited``); shown beside the bar."""

    def concurrency(self, text: str) -> None:
        """The adaptive concurrency now (``c=3/16``), shown beside the bar."""

    def close(self) -> None: ...


class NullProgress:
    """For --quiet, tests and benchmarks."""

    def found(self, n: int) -> None:
        pass

    def done(self, ok: int, failed: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def concurrency(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    """done/total, img/s, ETA, ok and error counts."""

    def __init__(self, *, skipped: int = 0, file: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=0,
            unit="img",
            desc="captioning",
            file=file or sys.stderr,
            dynamic_ncols=True,
            mininterval=0.25,
            smoothing=0.05,
        )
        self._ok = 0
        self._failed = 0
        self._skipped = skipped
        self._note = ""
        self._concurrency = ""
        self._scanning = True

    def found(self, n: int) -> None:
        self._bar.total = (self._bar.total or 0) + n

    def scan_finished(self) -> None:
        self._scanning = False
        self._postfix()

    def done(self, ok: int, failed: int) -> None:
        self._ok += ok
        self._failed += failed
        self._postfix(refresh=False)
        self._bar.update(ok + failed)

    def note(self, text: str) -> None:
        self._note = text
        self._postfix()

    def concurrency(self, text: str) -> None:
        self._concurrency = text  # shown at the next update; the writer calls this once per batch

    def _postfix(self, refresh: bool = True) -> None:
        parts = [f"ok={self._ok}", f"err={self._failed}"]
        if self._skipped:
            parts.append(f"skipped={self._skipped}")
        if self._concurrency:
            parts.append(self._concurrency)
        if self._scanning:
            parts.append("scanning")
        if self._note:
            parts.append(self._note)
        self._bar.set_postfix_str(" ".join(parts), refresh=refresh)

    def close(self) -> None:
        self._bar.close()
