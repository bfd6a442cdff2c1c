"""The seams every package shares: a clock and a sleep, passed in so pure code is tested without waiting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["Clock", "Sleep"]

#: Seconds on a monotonic clock (``time.monotonic``, ``time.perf_counter``, or a test's fake clock).
Clock = Callable[[], float]
#: ``anyio.sleep`` or a test's fake, which advances a fake clock instead of waiting.
Sleep = Callable[[float], Awaitable[None]]
