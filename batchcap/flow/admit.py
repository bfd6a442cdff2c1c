"""Everything an attempt waits for before it is sent, and everything its outcome teaches, in one place.

    admit:   circuit (an outage or a spent quota: one probe at a time) -> concurrency slot (adaptive)
             -> rate token (the AIMD bucket) -> the server's own pace (its headers, or a learned window)
    outcome: answered(pass, quota) / failed(pass, exc) -> "closed" | "open" | "slept"

The senders (``run.attempt``) call nothing else of ``flow`` per attempt: a new gate (a budget reservation, a
Space's queue) is one more step here, and every step sees the same outcomes. The order matters: the circuit
first, so nobody holds a slot or a token while the target is down; the slot's round-trip clock restarts after
any wait, so the adaptive limit measures the server, not our queue.

A failure's verdict tells the image what it costs: ``slept`` (the machine slept while it was in flight: retry,
free), ``open`` (the circuit is open: wait for it, free; retries this spell already cost are refunded by the
caller) or ``closed`` (an ordinary failure: the retry policy decides).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio

from batchcap.errors import APIError, ModelLoading, RateLimited, ServerError, TransportError, WaitRequested
from batchcap.flow.circuit import CircuitBreaker, CircuitSettings
from batchcap.flow.concurrency import ConcurrencyLimiter, Outcome, Ticket, outcome_of
from batchcap.flow.ratelimit import Limiter
from batchcap.flow.suspend import SuspendDetector
from batchcap.flow.window import ServerPace, WindowLearner
from batchcap.models import Quota
from batchcap.types import Clock, Sleep

__all__ = ["Admission", "Pass", "Verdict", "is_unreachable"]

Verdict = Literal["closed", "open", "slept"]

#: Proxy statuses that mean "the target behind me is not there" rather than an answer from it.
_GATEWAY = frozenset({502, 503, 504})


def is_unreachable(exc: APIError) -> bool:
    """A transport failure, or a proxy's 502/503/504 (a loading model that says how long is not one)."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ModelLoading):
        return exc.status in _GATEWAY and exc.estimated_time is None
    return isinstance(exc, ServerError) and exc.status in _GATEWAY


@dataclass(slots=True)
class Pass:
    """One admitted attempt: when it went out (monotonic and wall), whether it is the circuit's probe, and
    its concurrency ticket."""

    started: float
    sent_wall: float
    probe: bool
    ticket: Ticket | None


class Admission:
    """The gates of one target, shared by its senders (see the module docstring)."""

    __slots__ = (
        "_clock",
        "_sleep",
        "_wall",
        "breaker",
        "concurrency",
        "learner",
        "limiter",
        "longest_wait",
        "pace",
        "suspend",
        "try_acquire",
    )

    def __init__(
        self, *, limiter: Limiter, concurrency: ConcurrencyLimiter | None = None,
        circuit: CircuitSettings | None = None, suspend: SuspendDetector | None = None,
        longest_wait: Callable[[BaseException], float] = lambda exc: 120.0, clock: Clock = time.monotonic,
        wall: Clock = time.time, sleep: Sleep = anyio.sleep,
    ) -> None:
        self.limiter = limiter
        #: the longest pause a server's hint may impose on the whole pool (``RetryPolicy.longest_wait``: the
        #: policy's ``wait_cap``, a spent GPU quota's whole wait)
        self.longest_wait = longest_wait
        self.try_acquire = limiter.try_acquire  # unlimited and unpaused: a token without a coroutine
        self.concurrency = concurrency  #: the adaptive limit (None for fixed:N: the senders are the limit)
        self.breaker = CircuitBreaker(circuit, clock=clock)
        self.pace = ServerPace()
        self.learner = WindowLearner()
        self.suspend = suspend
        self._clock = clock
        self._wall = wall
        self._sleep = sleep

    def try_admit(self) -> tuple[Pass | None, bool]:
        """The per-request fast path, no coroutine: a pass if every gate is open now (circuit closed, nothing
        paced, a free rate token, room in the limit), else None and whether the rate token was taken (for
        ``admit``)."""
        if self.breaker.circuit.state != "closed" or self.pace.active or not self.try_acquire():
            return None, False
        ticket = None
        if (conc := self.concurrency) is not None and (ticket := conc.try_acquire()) is None:
            return None, True
        return Pass(self._clock(), self._wall(), False, ticket), True

    async def admit(self, *, token_taken: bool = False) -> Pass:
        """Wait at every gate; the pass to send with. Cancelled: nothing is held."""
        probe = await self.breaker.admit()
        conc = self.concurrency
        ticket = None
        try:
            if conc is not None:
                ticket = await conc.acquire()
            waited = False
            if not (token_taken and not probe) and not self.try_acquire():
                await self.limiter.acquire()
                waited = True
            pace = self.pace
            if pace.active:
                delay = pace.reserve(self._clock())
                if delay > 0:
                    await self._sleep(delay)
                    waited = True
            if waited and ticket is not None and conc is not None:
                ticket = conc.restart(ticket)  # the RTT is the server's time, not our wait for a token
        except BaseException:
            if ticket is not None and conc is not None:
                conc.release(ticket, "ignore")
            self.breaker.abandon(probe)
            raise
        return Pass(self._clock(), self._wall(), probe, ticket)

    def abandon(self, p: Pass) -> None:
        """The attempt never got an answer or a failure (cancelled): give back what it held."""
        self._release(p, "ignore")
        self.breaker.abandon(p.probe)

    def _release(self, p: Pass, outcome: Outcome) -> None:
        if p.ticket is not None and self.concurrency is not None:
            self.concurrency.release(p.ticket, outcome)
            p.ticket = None

    def answered(self, p: Pass, quota: Quota | None = None) -> None:
        """A 2xx: the limits grow back, the circuit closes, the window learner counts it."""
        if p.ticket is not None:
            self._release(p, "ok")
        self.limiter.succeeded()
        breaker = self.breaker
        if p.probe and breaker.circuit.reason == "throttled":
            spacing = self.learner.confirmed(p.sent_wall)
            if spacing is not None:
                self.pace.learned(spacing, last=p.started)
        if breaker.circuit.state == "closed":
            breaker.circuit.answered(0.0, p.started, p.probe)  # nobody waits: no wake-up, no clock
        else:
            breaker.answered(p.started, p.probe)
        self.learner.success(p.sent_wall)
        if quota is not None:
            self.pace.observe(self._clock(), quota)

    def failed(self, p: Pass, exc: APIError) -> Verdict:
        """A failed attempt: what it teaches every gate, and what it costs the image (see the docstring)."""
        now = self._clock()
        if self.suspend is not None and self.suspend.slept_since(p.started, now, self._wall()):
            self.abandon(p)
            return "slept"
        self._release(p, outcome_of(exc))
        if exc.quota is not None:
            self.pace.observe(now, exc.quota)
        hint = exc.retry_after if isinstance(exc, WaitRequested) else None
        if isinstance(exc, RateLimited):
            self.limiter.throttled(None if hint is None else min(hint, self.longest_wait(exc)))
        breaker = self.breaker
        if is_unreachable(exc):
            is_open = breaker.unreachable(p.started, p.probe, hint)
        elif isinstance(exc, RateLimited) and hint is None and not _says_when(exc.quota):
            is_open = breaker.throttled(p.started, p.probe, self._probe_at(p.probe, now))
        elif isinstance(exc, WaitRequested) and not p.probe:
            is_open = breaker.circuit.is_open  # a wait with a hint: the limiter's pause or the policy honours it
        else:
            breaker.answered(p.started, p.probe)  # the target answered: it is reachable
            is_open = False
        return "open" if is_open else "closed"

    def _probe_at(self, probe: bool, now: float) -> float | None:
        """When to probe a spent quota: just after the next boundary of a candidate window (monotonic)."""
        if self.breaker.circuit.is_open and not probe:
            return None  # a 429 of a request sent before the circuit opened: the probe time stands
        wall = self._wall()
        at = self.learner.refuted(wall) if probe else self.learner.exhausted(wall)
        return now + (at - wall)

    def note(self) -> str | None:
        """The circuit's line for the progress display, while it is open."""
        return self.breaker.note()

    def __repr__(self) -> str:
        return f"<Admission {self.breaker.circuit!r} {self.pace!r} {self.limiter!r}>"


def _says_when(quota: Quota | None) -> bool:
    """Whether a 429's headers said when the quota comes back (then the pace holds until then)."""
    return quota is not None and (quota.retry_after is not None or (quota.reset is not None and
                                                                    quota.remaining is not None))
