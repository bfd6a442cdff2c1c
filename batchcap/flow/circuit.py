"""The circuit: ride out an outage (or a spent quota) with one probe at a time, instead of spending every
image's retries on it.

A target that has answered before and now fails every request at the transport level (refused, reset, timed
out) or with a proxy's 502/503/504 is *unreachable*; one that answers nothing but 429 without a hint has spent
its window's quota (*throttled*). Either way, every request sent meanwhile is wasted and, worse, each image
spends its retries and ends as an error record. So after a spell of such failures with no answer between them,
the circuit opens: nobody sends, one probe at a time checks the target (with backoff, or at the time the
caller names: the next window boundary, a Retry-After), and the first answer closes it; the pool goes on at
full speed. Failures while it is open cost the images nothing (``run.attempt`` refunds what the spell cost).

:class:`Circuit` is the pure state machine with the time passed in (monotonic seconds)::

    wait, probe = circuit.admit(now)        # before each attempt: wait seconds (inf: until the probe is back)
    circuit.answered(now, sent, probe)      # any answer that shows the target reachable (2xx, 4xx, a 500)
    circuit.unreachable(now, sent, probe)   # transport failure or proxy 502/503/504; True: the circuit is open
    circuit.throttled(now, sent, probe, probe_at)   # a 429 without a hint; ``probe_at``: when to probe

:class:`CircuitBreaker` is its async face for the senders: ``probe = await breaker.admit()`` waits while it is
open, woken when the probe comes back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import anyio

from batchcap.errors import ConfigError
from batchcap.types import Clock

__all__ = ["Circuit", "CircuitBreaker", "CircuitSettings", "CircuitState", "OpenReason"]

CircuitState = Literal["closed", "open", "probing"]
#: Why the circuit opened: the target does not answer, or it answers only 429 (its quota is spent).
OpenReason = Literal["unreachable", "throttled"]


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    """When the circuit opens and how often it probes. Defaults suit every target; no flag sets them."""

    #: Transport/proxy failures in a row, with no answer between them, that open the circuit. Random faults
    #: (a 10 % fault rate gives five in a row once in 100,000 requests) do not; an outage does at once.
    open_after: int = 5
    #: 429s in a row without a wait hint that mean the window's quota is spent (the requests in flight when
    #: the quota ran out come back as one such spell).
    throttled_after: int = 3
    probe_base: float = 1.0  #: seconds to the first probe of an outage; doubled after each failed probe
    probe_cap: float = 15.0  #: longest time between two probes (an outage is noticed this soon after it ends)

    def __post_init__(self) -> None:
        for name in ("open_after", "throttled_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"circuit {name} must be a whole number >= 1 (got {value!r})")
        for name in ("probe_base", "probe_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"circuit {name} must be a number of seconds > 0 (got {value!r})")

    def backoff(self, probes: int) -> float:
        """Seconds before probe number ``probes + 1`` of one outage: ``base * 2 ** probes``, capped."""
        return min(self.probe_cap, self.probe_base * 2.0 ** min(probes, 62))


class Circuit:
    """Closed, open (everyone waits for the next probe time) or probing (one request out as the probe).

    Any answer ends a spell of unreachable failures. A spell of 429s is ended only by the answer to a request
    sent after the spell began: the late success of a request admitted before the quota ran out says nothing.
    ``spell`` numbers the spells, so an image can tell whether the retries it spent belong to the one that
    opened the circuit.
    """

    __slots__ = ("_answer_sent", "_throttled_since", "_throttles", "_unreachable", "next_probe", "opened_at",
                 "probes", "reason", "settings", "spell", "state")

    def __init__(self, settings: CircuitSettings | None = None) -> None:
        self.settings = settings or CircuitSettings()
        self.state: CircuitState = "closed"
        self.reason: OpenReason | None = None
        self.opened_at: float | None = None  #: when the circuit opened (None while closed)
        self.next_probe = -math.inf  #: no probe before this time
        self.probes = 0  #: failed probes in this opening
        self.spell = 0  #: the number of the current spell of failures (grows when an answer ends one)
        self._unreachable = 0  # transport/proxy failures in a row
        self._throttles = 0  # 429s in a row, counted from requests sent after the latest answered one
        self._throttled_since = math.inf  # send time of the first 429 of the current spell
        self._answer_sent = -math.inf  # send time of the latest request that got an answer

    @property
    def is_open(self) -> bool:
        return self.state != "closed"

    def admit(self, now: float) -> tuple[float, bool]:
        """``(0.0, probe)``: go now (``probe``: as the one probe); ``(wait, False)``: ask again after ``wait``
        seconds (``inf``: when the probe out now comes back)."""
        if self.state == "closed":
            return 0.0, False
        if self.state == "probing":
            return math.inf, False
        if now >= self.next_probe:
            self.state = "probing"
            return 0.0, True
        return self.next_probe - now, False

    def answered(self, now: float, sent: float, probe: bool = False) -> None:
        """An answer that shows the target reachable: a spell of failures it ends is over; the probe's answer
        (or any answer during an outage) closes the circuit."""
        self._answer_sent = max(self._answer_sent, sent)
        if not (self._unreachable or self._throttles or probe) and self.state == "closed":
            return  # the per-request path: nothing to end
        ends_throttle = probe or sent >= self._throttled_since
        if self.state != "closed" and not (probe or self.reason == "unreachable" or ends_throttle):
            return  # a request admitted before the quota ran out: the probe decides
        if self._unreachable or (self._throttles and ends_throttle) or self.state != "closed":
            self.spell += 1
        self._unreachable = 0
        if ends_throttle:
            self._throttles, self._throttled_since = 0, math.inf
        self.state, self.reason, self.opened_at, self.probes = "closed", None, None, 0
        self.next_probe = -math.inf

    def unreachable(self, now: float, sent: float, probe: bool = False, hint: float | None = None) -> bool:
        """A transport failure or a proxy's 502/503/504. True when the circuit is (now) open."""
        if self._reopen(now, probe, "unreachable", None, hint):
            return True
        if self.state != "closed":
            return True  # sent before it opened: the probe decides
        self._unreachable += 1
        return self._maybe_open(now, self._unreachable >= self.settings.open_after, "unreachable", None, hint)

    def throttled(self, now: float, sent: float, probe: bool = False, probe_at: float | None = None) -> bool:
        """A 429 without a wait hint; ``probe_at`` is when to probe if this opens (or re-arms) the circuit."""
        if self._reopen(now, probe, "throttled", probe_at, None):
            return True
        if self.state != "closed":
            return True
        if sent < self._answer_sent:
            return False  # sent before the latest answered request: not part of a spell
        self._throttles += 1
        self._throttled_since = min(self._throttled_since, sent)
        return self._maybe_open(now, self._throttles >= self.settings.throttled_after, "throttled", probe_at, None)

    def _reopen(self, now: float, probe: bool, reason: OpenReason, probe_at: float | None,
                hint: float | None) -> bool:
        """The probe failed: open again, the next probe later."""
        if not (probe and self.state == "probing"):
            return False
        self.probes += 1
        self.state, self.reason = "open", reason
        self.next_probe = probe_at if probe_at is not None else now + self._wait(hint)
        return True

    def _maybe_open(self, now: float, due: bool, reason: OpenReason, probe_at: float | None,
                    hint: float | None) -> bool:
        if not due:
            return False
        self.state, self.reason, self.opened_at, self.probes = "open", reason, now, 0
        self.next_probe = probe_at if probe_at is not None else now + self._wait(hint)
        return True

    def _wait(self, hint: float | None) -> float:
        wait = self.settings.backoff(self.probes)
        if hint is not None and math.isfinite(hint) and hint > 0:
            wait = max(wait, min(hint, 4 * self.settings.probe_cap))
        return wait

    def abandon(self, now: float) -> None:
        """The probe was given up (cancelled, or it found a fault that says nothing): probe again at once."""
        if self.state == "probing":
            self.state = "open"
            self.next_probe = now

    def open_for(self, now: float) -> float | None:
        """Seconds the circuit has been open, or None while closed."""
        return None if self.opened_at is None else max(0.0, now - self.opened_at)

    def __repr__(self) -> str:
        return (f"<Circuit {self.state}{' ' + self.reason if self.reason else ''} probes={self.probes} "
                f"spell={self.spell} unreachable={self._unreachable} throttles={self._throttles}>")


class CircuitBreaker:
    """The async face of one :class:`Circuit`, shared by every sender of a target."""

    __slots__ = ("_changed", "_clock", "circuit")

    def __init__(self, settings: CircuitSettings | None = None, *, clock: Clock = time.monotonic) -> None:
        self.circuit = Circuit(settings)
        self._clock = clock
        self._changed = anyio.Event()

    async def admit(self) -> bool:
        """Wait while the circuit is open; True if this attempt goes out as the probe."""
        circuit = self.circuit
        if circuit.state == "closed":  # the per-request fast path: no coroutine switch
            return False
        while True:
            wait, probe = circuit.admit(self._clock())
            if wait <= 0:
                return probe
            if self._changed.is_set():
                self._changed = anyio.Event()
            with anyio.move_on_after(wait):
                await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()

    def answered(self, sent: float, probe: bool = False) -> None:
        was_open = self.circuit.is_open
        self.circuit.answered(self._clock(), sent, probe)
        if was_open:
            self._wake()

    def unreachable(self, sent: float, probe: bool = False, hint: float | None = None) -> bool:
        is_open = self.circuit.unreachable(self._clock(), sent, probe, hint)
        self._wake()
        return is_open

    def throttled(self, sent: float, probe: bool = False, probe_at: float | None = None) -> bool:
        is_open = self.circuit.throttled(self._clock(), sent, probe, probe_at)
        self._wake()
        return is_open

    def abandon(self, probe: bool) -> None:
        if probe:
            self.circuit.abandon(self._clock())
            self._wake()

    def note(self) -> str | None:
        """``target unreachable for 2m, probing`` while open, for the progress line; None while closed."""
        circuit = self.circuit
        since = circuit.open_for(self._clock())
        if since is None:
            return None
        what = "unreachable" if circuit.reason == "unreachable" else "rate-limited (quota spent)"
        return f"target {what} for {_span(since)}, probing"

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.circuit!r}>"


def _span(seconds: float) -> str:
    """``45s``, ``2m``, ``1h05m``: how long, as a person says it."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
