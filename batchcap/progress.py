"""Progress display. The pipeline talks to a Progress; the CLI picks a bar (a terminal), plain lines (a log
file: nohup, cron, a Ray driver) or nothing (--quiet)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

from batchcap.types import Clock
from batchcap.words import plural

__all__ = ["LogProgress", "NullProgress", "Progress", "TqdmProgress", "eta"]


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

    def errors(self, by_type: Mapping[str, int]) -> None:
        """The error records so far by type (the same mapping each call, updated in place)."""

    def tick(self) -> None:
        """Once a second from the run's watchdog, whatever else happens: a display on a timer prints here."""

    def close(self) -> None: ...


class NullProgress:
    """For --quiet, tests and benchmarks."""

    def errors(self, by_type: Mapping[str, int]) -> None:
        pass

    def tick(self) -> None:
        pass

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

    def errors(self, by_type: Mapping[str, int]) -> None:
        pass  # the bar shows the total; the summary breaks it down

    def tick(self) -> None:
        pass  # tqdm refreshes on its own

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


def eta(seconds: float | None) -> str:
    """``3m05s``, ``2h10m``, or ``?``: how long, as a log line says it."""
    if seconds is None or not 0 <= seconds <= 1e7:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LogProgress:
    """For a log file: one plain line every ``every`` seconds, never a carriage return::

        batchcap: 1200/50000 done (1180 ok, 20 errors: TransportError 12, RejectedImage 8), 41.3 img/s,
        ETA 19m40s, c=12/16, target unreachable for 2m, probing

    (one line). ``write`` receives each line without its newline; the CLI passes one that prints to stderr.
    The rate is measured over the last interval (a log read later wants "how fast now"), the ETA from it.
    """

    def __init__(self, *, write: Callable[[str], None], every: float = 30.0, skipped: int = 0,
                 clock: Clock = time.monotonic) -> None:
        self._write = write
        self._every = every
        self._clock = clock
        self._total = 0
        self._ok = 0
        self._failed = 0
        self._skipped = skipped
        self._scanning = True
        self._note = ""
        self._concurrency = ""
        self._by_type: Mapping[str, int] = {}
        self._last = clock()
        self._last_done = 0

    def found(self, n: int) -> None:
        self._total += n

    def scan_finished(self) -> None:
        self._scanning = False

    def done(self, ok: int, failed: int) -> None:
        self._ok += ok
        self._failed += failed

    def note(self, text: str) -> None:
        self._note = text

    def concurrency(self, text: str) -> None:
        self._concurrency = text

    def errors(self, by_type: Mapping[str, int]) -> None:
        self._by_type = by_type

    def tick(self) -> None:
        now = self._clock()
        if now - self._last >= self._every:
            self._write(self.line(now))
            self._note = ""  # a note is news: shown once (an outage's is sent again every second while it lasts)

    def line(self, now: float | None = None) -> str:
        """The line for ``now`` (and the interval it closes)."""
        now = self._clock() if now is None else now
        done = self._ok + self._failed
        span = max(now - self._last, 1e-9)
        rate = (done - self._last_done) / span
        self._last, self._last_done = now, done
        total = f"{self._total}{'+' if self._scanning else ''}"
        errors = plural(self._failed, "error")
        if self._failed and self._by_type:
            kinds = sorted(self._by_type.items(), key=lambda kv: -kv[1])
            errors += ": " + ", ".join(f"{name} {n}" for name, n in kinds[:4])
        left = self._total - done
        parts = [f"batchcap: {done}/{total} done ({self._ok} ok, {errors})", f"{rate:.1f} img/s",
                 f"ETA {eta(left / rate) if rate > 0 and not self._scanning else '?'}"]
        if self._skipped:
            parts.append(f"{self._skipped} already done")
        if self._concurrency:
            parts.append(self._concurrency)
        if self._note:
            parts.append(self._note)
        return ", ".join(parts).replace("\r", " ").replace("\n", " ")

    def close(self) -> None:
        pass  # the summary follows; a last progress line would repeat it
