"""Did the process sleep? The one place a laptop's suspend (or a SIGSTOP) is noticed.

A request in flight when the machine slept comes back as a timeout or a reset that says nothing about the
target or the image: it is retried without spending a retry, without feeding the circuit or the concurrency
limit, and the time asleep does not count toward ``--max-wait``. Two signs, checked at every heartbeat and
whenever a failed attempt is judged:

* a long gap on the monotonic clock since the last heartbeat (a stopped process: SIGSTOP, a debugger, a
  VM paused; on macOS also a sleep), longer than any normal stall of the event loop;
* the wall clock moving much further than the monotonic one (Linux's monotonic clock stops during suspend
  while the wall clock does not).

Pure, both clocks passed in::

    detector = SuspendDetector(now=time.monotonic(), wall=time.time())
    gap = detector.tick(time.monotonic(), time.time())     # the heartbeat (every second): seconds slept, or 0
    detector.slept_since(started, time.monotonic(), time.time())  # did an attempt started then sleep?
"""

from __future__ import annotations

from collections import deque

__all__ = ["GAP", "SuspendDetector"]

#: Seconds without a heartbeat (which beats every second) that count as a sleep: far above an event loop's
#: stalls on a busy machine; a false alarm only costs one free retry.
GAP = 5.0
#: Suspensions remembered (an attempt outlives at most a few; the oldest are never asked about).
_REMEMBER = 16


class SuspendDetector:
    """Heartbeats in, suspensions out: ``(woke_at, seconds asleep)`` on the monotonic clock."""

    __slots__ = ("_last_mono", "_last_wall", "_unreported", "gap", "slept_total", "suspensions")

    def __init__(self, *, now: float, wall: float, gap: float = GAP) -> None:
        self.gap = gap
        self._last_mono = now
        self._last_wall = wall
        self.suspensions: deque[tuple[float, float]] = deque(maxlen=_REMEMBER)
        self.slept_total = 0.0  #: seconds asleep in all, for the run summary
        self._unreported = 0.0  # seconds asleep that ``take`` has not handed out yet

    def tick(self, now: float, wall: float) -> float:
        """A heartbeat: the seconds slept since the last one (0.0 if none)."""
        mono_step = now - self._last_mono
        wall_step = wall - self._last_wall
        self._last_mono, self._last_wall = now, wall
        slept = 0.0
        if mono_step > self.gap:
            slept = mono_step
        elif wall_step - mono_step > self.gap:
            slept = wall_step - mono_step
        if slept:
            self.suspensions.append((now, slept))
            self.slept_total += slept
            self._unreported += slept
        return slept

    def take(self) -> float:
        """Seconds asleep since the last ``take`` (whoever's ``tick`` noticed them): for the stall clocks."""
        slept, self._unreported = self._unreported, 0.0
        return slept

    def slept_since(self, started: float, now: float, wall: float) -> bool:
        """Whether the process slept after ``started`` (monotonic). A sleep the heartbeat has not seen yet (the
        failed attempt was judged first, right after waking) counts, and is recorded now."""
        if self.tick_due(now, wall):
            self.tick(now, wall)
        return any(woke > started for woke, _ in self.suspensions)

    def tick_due(self, now: float, wall: float) -> bool:
        """A sleep happened since the last heartbeat (it would show at the next ``tick``)."""
        return now - self._last_mono > self.gap or (wall - self._last_wall) - (now - self._last_mono) > self.gap

    def __repr__(self) -> str:
        return f"<SuspendDetector suspensions={len(self.suspensions)} slept={self.slept_total:.1f}s>"
