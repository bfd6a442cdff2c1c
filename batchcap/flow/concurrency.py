"""How many requests to keep in flight: adaptive below a ceiling (``--concurrency N``) or fixed (``fixed:N``).

A server has a capacity (replicas x what each runs at once, protocol.md section 9): the default Endpoint
container runs one request at a time, TGI/vLLM batch many. Requests beyond it only wait in the server's queue, and
a client that times out and retries puts the retry behind its own abandoned request. So the limit is found the way
TCP Vegas and Netflix's concurrency-limits (VegasLimit, Gradient2Limit) find it, from latency: the floor (the
smallest round-trip time seen) is the server's own work; latency well above it is queueing.

The rule (:class:`AdaptiveLimit`, pure, the clock passed in), per finished request:

* ``ok`` (a caption: the only answer that measures the server's work): update the floor and a smoothed
  RTT. If ``srtt > tolerance * floor`` (and by more than ``min_queue``, 50 ms: below that it is the client's
  own event loop on a fast server, not a queue) the server is queueing: cut the limit to ``limit * max(backoff,
  tolerance * floor / srtt)``. Else, if the pool was using at least half the limit, grow: by 1 per answer
  (slow start, doubling per round trip) while ``srtt <= near * floor`` or within ``min_queue / 2`` of it
  (latency at its floor: nothing queues, so there is room, also right after a cut for a cold start or a burst of
  429s), else by ``1 / limit`` per answer (one per round trip) while ``srtt <= tolerance * floor`` (latency
  rising: probe gently).
* ``timeout`` or ``overload`` (429, 503): cut to ``limit * backoff``, whichever signal comes first.
* ``error`` (reset, 5xx, unreadable body) and ``ignore`` (refusals, run-level stops, cancellation): no sample,
  no change.

Only requests sent after the last cut can cause another one (their RTTs reflect the new limit), so one burst of
timeouts halves the limit once, not once per request. A timeout or a 429/503 is only held back by the last cut of
its own kind: a mild latency cut (8 -> 7.8) must not make the burst of timeouts behind it wait a round trip
(here a whole timeout) before it can halve the limit. Against a one-at-a-time server the limit settles at 2-3
(RTT at most ~3 floors); against a batching server it climbs while batching keeps latency within ``tolerance``
of the floor, which is where throughput stops growing (a full batch of 8 at alpha 0.1 is 1.7 floors).

The floor is the smallest RTT seen, slowly forgotten: it is only raised when it is proven stale, after
``floor_window`` seconds at the minimum limit with latency still beyond tolerance (the server itself became
slower, since at the minimum nothing of ours queues). Forgetting it on a timer instead lets our own queueing
become the new floor (the drift Vegas is known for).

:class:`ConcurrencyLimiter` is the async wrapper: ``ticket = await limiter.acquire()`` before each attempt,
``limiter.release(ticket, outcome)`` after it. :func:`timeout_retry_delay` says how long a timed-out request's
retry should wait so it is not queued on top of its own abandoned request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import anyio

from batchcap.errors import ConfigError
from batchcap.types import Clock

__all__ = [
    "AdaptiveLimit",
    "Clock",
    "ConcurrencyLimiter",
    "ConcurrencySpec",
    "FixedLimit",
    "LimitAlgorithm",
    "LimitStats",
    "Outcome",
    "Ticket",
    "make_limit",
    "outcome_of",
    "parse_concurrency",
    "timeout_retry_delay",
]

Outcome = Literal["ok", "timeout", "overload", "error", "ignore"]


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted attempt: when it started, the cut epoch it belongs to, and the in-flight count with it."""

    started: float
    epoch: int
    inflight: int


class LimitStats(NamedTuple):
    """A snapshot for progress bars and reports."""

    limit: int
    inflight: int
    floor: float | None
    srtt: float | None
    cuts: int


class LimitAlgorithm(Protocol):
    """What :class:`ConcurrencyLimiter` needs from a limit: its value now, and a hook per finished attempt."""

    @property
    def value(self) -> int: ...

    @property
    def ceiling(self) -> int: ...

    @property
    def epoch(self) -> int: ...

    def on_done(self, ticket: Ticket, now: float, outcome: Outcome) -> None: ...

    def stats(self, inflight: int) -> LimitStats: ...


class FixedLimit:
    """Today's fixed pool: always ``n`` in flight (``--concurrency fixed:N``)."""

    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"concurrency must be an integer >= 1 (got {n!r}); pass --concurrency fixed:N")
        self._n = n

    @property
    def value(self) -> int:
        return self._n

    @property
    def ceiling(self) -> int:
        return self._n

    @property
    def epoch(self) -> int:
        return 0

    def on_done(self, ticket: Ticket, now: float, outcome: Outcome) -> None:
        return None

    def stats(self, inflight: int) -> LimitStats:
        return LimitStats(self._n, inflight, None, None, 0)

    def __repr__(self) -> str:
        return f"<FixedLimit {self._n}>"


class AdaptiveLimit:
    """The latency-gradient limit of the module docstring. Mutable; every method takes ``now``."""

    __slots__ = (
        "_at_min_since",
        "_ceiling",
        "_epoch",
        "_hard_epoch",
        "_limit",
        "_recent_min",
        "backoff",
        "cuts",
        "floor",
        "floor_window",
        "min_queue",
        "minimum",
        "near",
        "smoothing",
        "srtt",
        "tolerance",
    )

    def __init__(
        self,
        ceiling: int,
        *,
        initial: int = 1,
        minimum: int = 1,
        tolerance: float = 2.0,
        near: float = 1.5,
        backoff: float = 0.5,
        smoothing: float = 0.3,
        floor_window: float = 30.0,
        min_queue: float = 0.05,
    ) -> None:
        if isinstance(ceiling, bool) or not isinstance(ceiling, int) or ceiling < 1:
            raise ConfigError(f"concurrency must be an integer >= 1 (got {ceiling!r}); pass --concurrency N")
        if not 1 <= minimum <= ceiling:
            raise ConfigError(f"minimum concurrency must be within [1, {ceiling}] (got {minimum})")
        if not (1.0 < near <= tolerance and math.isfinite(tolerance)):
            raise ConfigError(f"need 1 < near <= tolerance (got near={near}, tolerance={tolerance})")
        if not (0.0 < backoff < 1.0 and 0.0 < smoothing <= 1.0 and floor_window > 0):
            raise ConfigError("need 0 < backoff < 1, 0 < smoothing <= 1 and floor_window > 0")
        self._ceiling = ceiling
        self.minimum = minimum
        self._limit = float(min(max(initial, minimum), ceiling))
        self.tolerance = tolerance
        self.near = near
        self.backoff = backoff
        self.smoothing = smoothing
        self.floor_window = floor_window
        #: seconds of latency above the floor that count as queueing at all: against a server answering in
        #: a millisecond, the client's own event loop adds more than that, and it is no server queue.
        self.min_queue = min_queue
        self.floor: float | None = None
        self.srtt: float | None = None
        self.cuts = 0
        self._epoch = 0
        self._hard_epoch = 0  # the epoch the last timeout/overload cut started
        self._at_min_since: float | None = None
        self._recent_min = math.inf

    @property
    def value(self) -> int:
        """Requests allowed in flight now."""
        return max(self.minimum, min(self._ceiling, int(self._limit)))

    @property
    def ceiling(self) -> int:
        return self._ceiling

    @property
    def epoch(self) -> int:
        """Bumped at every cut; tickets of an older epoch cannot cut again."""
        return self._epoch

    @property
    def exact(self) -> float:
        """The limit before rounding down, for tests and plots."""
        return self._limit

    def start_at(self, n: int) -> None:
        """Start from ``n`` (the server's own limit, once known: a Space shows it or runs one call at a time),
        within ``[minimum, ceiling]``; only before the first sample, so a measured limit is never overwritten."""
        if self.srtt is None and self.cuts == 0:
            self._limit = float(min(max(n, self.minimum), self._ceiling))

    def on_done(self, ticket: Ticket, now: float, outcome: Outcome) -> None:
        """Fold one finished attempt into the limit (see the module docstring for the rule)."""
        if outcome == "ok":
            self._sample(ticket, max(0.0, now - ticket.started), now)
        elif outcome in ("timeout", "overload"):
            self._cut(ticket, self.backoff, hard=True)

    def _sample(self, ticket: Ticket, rtt: float, now: float) -> None:
        if self.floor is None or rtt < self.floor:
            self.floor = rtt
        self.srtt = rtt if self.srtt is None else self.srtt + self.smoothing * (rtt - self.srtt)
        self._forget_stale_floor(rtt, now)
        floor = max(self.floor, 1e-6)
        ratio = self.srtt / floor
        excess = self.srtt - floor
        if ratio > self.tolerance and excess > self.min_queue:
            self._cut(ticket, max(self.backoff, self.tolerance / ratio))
            return
        if ticket.inflight * 2 < self.value:
            return  # the pool was not using the limit: its latency says nothing about a higher one
        if ratio <= self.near or excess <= self.min_queue / 2:
            self._limit += 1.0
        else:
            self._limit += 1.0 / max(self._limit, 1.0)
        self._limit = min(self._limit, float(self._ceiling))

    def _cut(self, ticket: Ticket, factor: float, *, hard: bool = False) -> None:
        if ticket.epoch < (self._hard_epoch if hard else self._epoch):
            return  # sent before the last cut (of its kind): its fate was sealed by the old limit
        self._limit = max(float(self.minimum), self._limit * factor)
        self._epoch += 1
        if hard:
            self._hard_epoch = self._epoch
        self.cuts += 1

    def _forget_stale_floor(self, rtt: float, now: float) -> None:
        """At the minimum limit our own requests do not queue: RTTs there are the server's no-load time."""
        at_min = self.value <= self.minimum and self.srtt is not None and self.floor is not None
        if not at_min or self.srtt is None or self.floor is None or self.srtt <= self.tolerance * self.floor:
            self._at_min_since, self._recent_min = None, math.inf
            return
        if self._at_min_since is None:
            self._at_min_since, self._recent_min = now, rtt
            return
        self._recent_min = min(self._recent_min, rtt)
        if now - self._at_min_since >= self.floor_window:
            self.floor = self.srtt = self._recent_min
            self._at_min_since, self._recent_min = None, math.inf

    def stats(self, inflight: int) -> LimitStats:
        return LimitStats(self.value, inflight, self.floor, self.srtt, self.cuts)

    def __repr__(self) -> str:
        floor = "-" if self.floor is None else f"{self.floor:.3f}s"
        srtt = "-" if self.srtt is None else f"{self.srtt:.3f}s"
        return f"<AdaptiveLimit limit={self._limit:.2f}/{self._ceiling} floor={floor} srtt={srtt} cuts={self.cuts}>"


def timeout_retry_delay(floor: float | None, inflight: int, limit: int, *, cap: float = 60.0) -> float:
    """Seconds a timed-out request's retry should wait so it does not queue on top of its abandoned twin.

    The abandoned request still occupies the server until its work is done (the real container finishes it),
    and after the cut the pool holds ``inflight - limit`` more requests than it should. On a server that works
    through its queue one floor at a time, that excess plus the abandoned request drain in about ``floor *
    (excess + 1)``. Without a floor yet (no answer so far) there is nothing to go on: 0, and the backoff of the
    retry policy applies alone.
    """
    if floor is None or floor <= 0 or not math.isfinite(floor):
        return 0.0
    excess = max(0, inflight - limit)
    return min(cap, floor * (excess + 1))


def outcome_of(exc: BaseException | None) -> Outcome:
    """The outcome kind of an attempt, by error class (None is ``ok``).

    Only a caption is an RTT sample: a refusal (400, 413, 422) can come back in a millisecond without any model
    work (a Content-Type check, a proxy's size limit), and one such sample as the floor would make every real
    answer look like queueing. 429 and 503 (and a 502 while a replica wakes, a Space's full queue) are push-back,
    a spent GPU quota is not (it is the user's, not the server's); a timeout is a ``RequestTimeout`` (``client.py`` raises it for aiohttp's ``TimeoutError``);
    other transport faults, 5xx and unreadable bodies say nothing about capacity.
    """
    from batchcap.errors import QuotaExhausted, RequestTimeout, ServerError, TransportError, WaitRequested

    if exc is None:
        return "ok"
    if isinstance(exc, QuotaExhausted):  # a per-user daily budget: it says nothing of the server's capacity
        return "ignore"
    if isinstance(exc, WaitRequested):  # 429, a model loading, a Space's full queue, any later kind of "wait"
        return "overload"
    if isinstance(exc, TransportError):
        return "timeout" if isinstance(exc, RequestTimeout) else "error"
    if isinstance(exc, ServerError):
        return "overload" if exc.status == 503 else "error"
    return "ignore"


@dataclass(frozen=True, slots=True)
class ConcurrencySpec:
    """``--concurrency``: ``N`` (adaptive, N the ceiling) or ``fixed:N``."""

    mode: Literal["adaptive", "fixed"]
    n: int

    @property
    def adaptive(self) -> bool:
        return self.mode == "adaptive"

    def __str__(self) -> str:
        return str(self.n) if self.adaptive else f"fixed:{self.n}"


def parse_concurrency(text: str | int | ConcurrencySpec) -> ConcurrencySpec:
    """``"16"`` / ``"auto:16"`` / ``"adaptive:16"`` -> adaptive with ceiling 16; ``"fixed:16"`` -> fixed."""
    if isinstance(text, ConcurrencySpec):
        return text
    if isinstance(text, bool):
        raise ConfigError(f"--concurrency must be N or fixed:N (got {text!r})")
    raw = str(text).strip().lower()
    mode, sep, number = raw.partition(":")
    if not sep:
        mode, number = "adaptive", raw
    if mode in ("auto", "adaptive"):
        kind: Literal["adaptive", "fixed"] = "adaptive"
    elif mode == "fixed":
        kind = "fixed"
    else:
        raise ConfigError(f"--concurrency {text!r}: write N (adaptive up to N) or fixed:N")
    try:
        n = int(number)
    except ValueError:
        raise ConfigError(f"--concurrency {text!r}: {number!r} is not a whole number; write N or fixed:N") from None
    if n < 1:
        raise ConfigError(f"--concurrency {text!r}: must be >= 1")
    return ConcurrencySpec(kind, n)


def make_limit(spec: ConcurrencySpec) -> AdaptiveLimit | FixedLimit:
    """The limit algorithm for a parsed ``--concurrency``."""
    return AdaptiveLimit(spec.n) if spec.mode == "adaptive" else FixedLimit(spec.n)


class ConcurrencyLimiter:
    """Admits attempts while fewer than the limit are in flight; FIFO among waiters. One event loop, no lock::

        ticket = await limiter.acquire()
        try:
            reply = await client.caption(image)
        except APIError as exc:
            limiter.release(ticket, outcome_of(exc))
            raise
        limiter.release(ticket, "ok")

    or ``async with limiter.slot() as slot: ...; slot.outcome = outcome_of(exc)``.
    """

    __slots__ = ("_algorithm", "_clock", "_inflight", "_waiters")

    def __init__(self, algorithm: LimitAlgorithm, *, clock: Clock = time.monotonic) -> None:
        self._algorithm = algorithm
        self._clock = clock
        self._inflight = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def algorithm(self) -> LimitAlgorithm:
        return self._algorithm

    @property
    def limit(self) -> int:
        return self._algorithm.value

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def stats(self) -> LimitStats:
        return self._algorithm.stats(self._inflight)

    async def acquire(self) -> Ticket:
        """Wait for room (FIFO), then count one more in flight.

        A waiter is counted in flight by the release that wakes it (a hand-off), so no newcomer can take its
        place between the wake-up and its resumption.
        """
        if self._waiters or self._inflight >= self._algorithm.value:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():  # handed a place it will not use: give it back and pass it on
                    self._inflight -= 1
                    self._wake()
                else:
                    self._waiters.remove(event)
                raise
        else:
            self._inflight += 1
        return Ticket(self._clock(), self._algorithm.epoch, self._inflight)

    def try_acquire(self) -> Ticket | None:
        """Count one more in flight if there is room now and nobody waits (no coroutine); else None."""
        if self._waiters or self._inflight >= self._algorithm.value:
            return None
        self._inflight += 1
        return Ticket(self._clock(), self._algorithm.epoch, self._inflight)

    def restart(self, ticket: Ticket) -> Ticket:
        """The same admission, its clock started now: for a caller that waited (for a rate token) after
        ``acquire``, so that wait is not taken for the server's queueing."""
        return Ticket(self._clock(), ticket.epoch, ticket.inflight)

    def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Count one attempt finished and feed its RTT and outcome to the limit."""
        self._inflight = max(0, self._inflight - 1)
        self._algorithm.on_done(ticket, self._clock(), outcome)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._inflight < self._algorithm.value:
            self._inflight += 1
            self._waiters.popleft().set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[_Slot]:
        """``async with limiter.slot() as s:``; set ``s.outcome`` (default ``ok``; ``ignore`` on an exception)."""
        ticket = await self.acquire()
        holder = _Slot(ticket)
        try:
            yield holder
        except BaseException:
            if holder.outcome == "ok":
                holder.outcome = "ignore"
            raise
        finally:
            self.release(ticket, holder.outcome)

    def __repr__(self) -> str:
        s = self.stats()
        floor = "-" if s.floor is None else f"{s.floor:.3f}s"
        srtt = "-" if s.srtt is None else f"{s.srtt:.3f}s"
        return (
            f"<ConcurrencyLimiter limit={s.limit}/{self._algorithm.ceiling} inflight={s.inflight} "
            f"waiting={self.waiting} floor={floor} srtt={srtt} cuts={s.cuts}>"
        )


class _Slot:
    __slots__ = ("outcome", "ticket")

    def __init__(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.outcome: Outcome = "ok"
