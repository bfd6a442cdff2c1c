"""One shared, adaptive token bucket for the whole sender pool.

The math is a pure class with the time passed in (``TokenBucket.reserve(now) -> delay``); the async wrapper
only reads the clock and sleeps, the split of aiolimiter's ``_leak`` and stamina's ``_compute_backoff``::

    limiter = RateLimiter(rate=5, burst=10)
    await limiter.acquire()          # before every HTTP attempt
    limiter.throttled(retry_after)   # on a 429: the whole pool slows down (and pauses, given a hint)
    limiter.succeeded()              # on a 2xx: the rate creeps back up to the configured ceiling

The rate is AIMD, as in TCP: halve on push-back, add a little per second of success. Without a configured rate
(``rate=None``) the bucket is unlimited until the first 429, then limited at half the grant rate it observed.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import NamedTuple, Protocol, TypedDict, Unpack

import anyio

from batchcap.types import Clock, Sleep

__all__ = ["BucketOptions", "LimiterStats", "RateLimiter", "TokenBucket"]

#: Seconds to win back one decrease with the default additive step: slow enough that a service whose real
#: limit is below ours is probed every ~10 s rather than every second, fast enough that a passing overload
#: costs little.
_RECOVERY_S = 10.0
#: Pending reservations remembered for ``cancel``; more than the sender pool ever holds.
_MAX_PENDING = 1024
#: The grant rate is measured over the last this-many grants (and at least ``_MIN_SPAN`` seconds): O(1) in
#: memory at any rate, and still meaningful at slow rates where a fixed 1-2 s window holds no grant at all.
_RECENT = 32
_MIN_SPAN = 0.05


class BucketOptions(TypedDict, total=False):
    """The adaptive knobs of ``TokenBucket``, passed through ``RateLimiter(**options)``."""

    min_rate: float
    decrease: float
    increase: float | None
    cooldown: float | None


class _Slot:
    """One pending reservation: when it is due and what it is worth in tokens at the current rate."""

    __slots__ = ("due", "n", "worth")

    def __init__(self, due: float, n: int) -> None:
        self.due = due
        self.n = n
        self.worth = float(n)


class TokenBucket:
    """A token bucket whose level may go negative (a reservation) and whose rate adapts to push-back.

    ``reserve(now)`` takes a token at once and answers how long the caller must wait before using it, so
    waiters are served in call order and nothing needs a lock on one event loop. Over any window no more
    than ``burst + ceiling * elapsed`` tokens become due. An earlier ``now`` than already seen counts as the
    latest.

    Adaptation (AIMD): each 429 multiplies the rate by ``decrease`` (not below ``min_rate``), at most once
    per ``cooldown`` (default ``max(1 s, 1 / new rate)``); successes add ``increase`` requests/s per second
    (default: one decrease won back in 10 s) up to the configured rate. A ``retry_after`` pauses the whole
    bucket: the refill stops and every pending due time moves back by the same amount (``postponed`` grows
    by it), so the queue keeps its spacing rather than firing at once when the pause ends.
    """

    __slots__ = (
        "_burst",
        "_calm_at",
        "_ceiling",
        "_cooldown",
        "_decrease",
        "_granted",
        "_grown_at",
        "_increase",
        "_level",
        "_min_rate",
        "_paused_until",
        "_peak",
        "_pending",
        "_postponed",
        "_rate",
        "_recent",
        "_stamp",
        "_step",
        "_throttles",
    )

    def __init__(
        self,
        rate: float | None,
        burst: int,
        *,
        now: float,
        min_rate: float = 0.05,
        decrease: float = 0.5,
        increase: float | None = None,
        cooldown: float | None = None,
    ) -> None:
        if rate is not None and math.isinf(rate) and rate > 0:
            rate = None
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be > 0 requests per second, or None for unlimited (got {rate!r})")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1 (got {burst!r}); 1 means evenly spaced requests")
        if not (math.isfinite(min_rate) and min_rate > 0):
            raise ValueError(f"min_rate must be > 0 (got {min_rate!r}); it keeps a throttled run crawling")
        if not 0 < decrease < 1:
            raise ValueError(
                f"decrease must be between 0 and 1 (got {decrease!r}); 0.5 halves the rate on a 429"
            )
        if increase is not None and not (math.isfinite(increase) and increase >= 0):
            raise ValueError(
                f"increase must be >= 0 requests/s per second, or None for the default (got {increase!r})"
            )
        if cooldown is not None and not (math.isfinite(cooldown) and cooldown >= 0):
            raise ValueError(f"cooldown must be >= 0 seconds, or None for the default (got {cooldown!r})")
        self._ceiling: float | None = rate  #: the user's rate; None = unlimited
        self._rate: float | None = rate
        self._burst = burst
        self._min_rate = min_rate
        self._decrease = decrease
        self._increase = increase
        self._cooldown = cooldown
        self._level = float(burst)
        self._stamp = now
        self._paused_until = -math.inf
        self._postponed = 0.0
        self._calm_at = -math.inf  # no decrease before this time: the cooldown after the last one
        self._grown_at = now  # additive increase is counted from here
        self._step = 0.0  # additive increase, requests/s per second, set at each decrease
        self._peak = math.inf  # for an originally unlimited bucket: above this rate it is unlimited again
        self._granted = 0
        self._throttles = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=_RECENT)
        self._pending: deque[_Slot] = deque(maxlen=_MAX_PENDING)  # oldest first; due times only grow

    @property
    def rate(self) -> float | None:
        """Current rate in tokens per second; None while unlimited."""
        return self._rate

    @property
    def ceiling(self) -> float | None:
        """The configured rate that recovery climbs back to; None if the user set no rate."""
        return self._ceiling

    @property
    def burst(self) -> int:
        """Most tokens that can be saved up and spent at once."""
        return self._burst

    @property
    def level(self) -> float:
        """Tokens at the last update; negative means that many are reserved ahead of time."""
        return self._level

    @property
    def paused_until(self) -> float:
        """No token is due before this time (``-inf`` if never paused)."""
        return self._paused_until

    @property
    def postponed(self) -> float:
        """Total seconds pauses have pushed pending due times back; a waiter adds any growth to its own."""
        return self._postponed

    @property
    def granted(self) -> int:
        """Tokens handed out, minus those given back by ``cancel``."""
        return self._granted

    @property
    def throttles(self) -> int:
        """How many times ``on_throttle`` was called."""
        return self._throttles

    def available(self, now: float) -> float:
        """The level ``now`` would see, without changing anything (for reprs and progress displays)."""
        if self._rate is None:
            return float(self._burst)
        return min(float(self._burst), self._level + self._rate * self._refill_time(now))

    def reserve(self, now: float, n: int = 1) -> float:
        """Take ``n`` tokens now; return the seconds to wait before using them (0.0 if none)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self._burst:
            raise ValueError(f"n must be an int between 1 and burst={self._burst} (got {n!r}); raise burst")
        self._refill(now)
        now = self._stamp
        self._granted += n
        self._recent.append((now, n))
        paused = max(0.0, self._paused_until - now)
        if self._rate is None:
            return paused
        self._level -= n
        delay = paused + max(0.0, -self._level) / self._rate
        if delay > 0:
            self._prune(now)
            self._pending.append(_Slot(now + delay, n))
        return delay

    def take_free(self, now: float) -> bool:
        """Take one token if it is free ``now`` (unlimited and not paused): what ``reserve(now)`` would do
        when it returns 0.0, without its checks. False, and nothing changed, otherwise.

        The per-request fast path of an unlimited run (``RateLimiter.try_acquire``).
        """
        if self._rate is not None or now < self._paused_until:
            return False
        self._stamp = max(self._stamp, now)
        self._granted += 1
        self._recent.append((self._stamp, 1))
        return True

    def cancel(self, now: float, due: float) -> bool:
        """Give back the reservation due at ``due`` (plus ``postponed`` growth) if its wait has not ended.

        Returns whether it was given back. Exact for the newest reservation, and so for any number cancelled
        newest first (a pool shutting down). An older one stays spent: a level cannot express a hole in the
        middle of the queue, and handing its slot to the next caller would put two requests on the newest
        slot. Wasting one slot is the safe side of that trade.
        """
        self._refill(now)
        now = self._stamp
        self._prune(now)
        if not self._pending or not math.isclose(self._pending[-1].due, due, rel_tol=1e-9, abs_tol=1e-9):
            return False
        slot = self._pending.pop()
        cap = 0.0 if now < self._paused_until else float(self._burst)  # a pause starts from an empty bucket
        self._level = min(cap, self._level + slot.worth)
        self._granted -= slot.n
        return True

    def on_throttle(self, now: float, retry_after: float | None = None) -> None:
        """The service pushed back (a 429): cut the rate, empty the saved-up burst, pause if given a hint.

        The decrease happens at most once per cooldown window: one overload answers every request in flight
        with a 429, and counting each would collapse the rate to the floor. The default window is
        ``max(1 s, 1 / new rate)``: until at least one request has gone out at the new rate, no answer can say
        whether that rate is still too high. ``retry_after`` pauses the whole bucket, every waiter included.
        An unlimited bucket becomes limited at ``decrease`` times the grant rate it observed over its last
        ``_RECENT`` grants, so an endpoint without a configured rate still backs off.
        """
        self._refill(now)
        now = self._stamp
        self._throttles += 1
        if self._rate is None:
            observed = self._observed(now)
            self._apply_decrease(now, observed)
            self._peak = observed
            self._level = 0.0
        elif now >= self._calm_at:
            if self._ceiling is None:
                self._peak = self._rate
            self._apply_decrease(now, self._rate)
        self._level = min(self._level, 0.0)  # the service is full: do not fire saved-up tokens at it
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            start = max(now, self._paused_until)
            end = now + retry_after
            if end > start:
                self._postponed += end - start
                self._paused_until = end
                self._prune(now)
                for slot in self._pending:
                    slot.due += end - start

    def on_success(self, now: float) -> None:
        """A request went through: grow the rate by ``step`` per second (not per call) toward the ceiling.

        Time counts only after the cooldown and any pause, and at most ``max(1 s, 1 / rate)`` per call, so a
        lone success after a quiet spell cannot jump the rate. A bucket created unlimited has no ceiling: it
        grows until it passes the rate that last provoked a 429, then is unlimited again, and the next 429
        measures the pool's real rate afresh (a limit far above what the pool achieves would take many
        halvings to bite).
        """
        if self._rate is None:  # nothing to grow; only the clock guard moves (what _refill would do)
            self._stamp = max(self._stamp, now)
            return
        self._refill(now)
        now = self._stamp
        start = max(self._grown_at, self._calm_at, self._paused_until)
        if now <= start:
            return
        grown = self._rate + self._step * min(now - start, max(1.0, 1.0 / self._rate))
        self._grown_at = now
        if self._ceiling is not None:
            self._set_rate(now, min(grown, self._ceiling))
        elif grown > self._peak:
            self._set_rate(now, None)
        else:
            self._set_rate(now, grown)

    def __repr__(self) -> str:
        return (
            f"<TokenBucket rate={_fmt_rate(self._rate)} ceiling={_fmt_rate(self._ceiling)} "
            f"burst={self._burst} level={self._level:.2f}@{self._stamp:g} "
            f"paused_until={self._paused_until:g} granted={self._granted} throttles={self._throttles}>"
        )

    def _refill_time(self, now: float) -> float:
        """Seconds of refill since the last update: time inside a pause does not count."""
        return max(0.0, now - max(self._stamp, self._paused_until))

    def _refill(self, now: float) -> None:
        if self._rate is not None:
            self._level = min(float(self._burst), self._level + self._rate * self._refill_time(now))
        self._stamp = max(self._stamp, now)

    def _prune(self, now: float) -> None:
        """Forget reservations whose wait is over: they can no longer be given back."""
        while self._pending and self._pending[0].due <= now:
            self._pending.popleft()

    def _cooldown_window(self) -> float:
        if self._cooldown is not None:
            return self._cooldown
        return max(1.0, 1.0 / self._rate) if self._rate is not None else 1.0

    def _observed(self, now: float) -> float:
        """Grants per second over the last ``_RECENT`` grants, up to ``now`` (0.0 before the first)."""
        if not self._recent:
            return 0.0
        total = sum(n for _, n in self._recent)
        return total / max(now - self._recent[0][0], _MIN_SPAN)

    def _apply_decrease(self, now: float, base: float) -> None:
        floor = self._min_rate if self._rate is None else min(self._min_rate, self._rate)
        new = max(floor, base * self._decrease)
        # The default step wins back one nominal decrease in _RECOVERY_S, and never less than min_rate does:
        # a bucket sitting on the floor must still be able to climb off it.
        nominal = max(base * (1.0 - self._decrease), self._min_rate) / _RECOVERY_S
        self._step = self._increase if self._increase is not None else nominal
        self._set_rate(now, new)
        self._calm_at = now + self._cooldown_window()
        self._grown_at = now

    def _set_rate(self, now: float, rate: float | None) -> None:
        """Change the rate keeping every pending due time: debt is stored in tokens, so it is rescaled."""
        self._refill(now)
        old = self._rate
        if rate is None:
            self._level = float(self._burst)
            self._pending.clear()
        elif old is not None:
            if self._level < 0:
                self._level *= rate / old
            for slot in self._pending:
                slot.worth *= rate / old
        self._rate = rate


def _fmt_rate(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{round(rate, 3)!r}/s"


class _HasRate(Protocol):
    @property
    def rate(self) -> float | None: ...


class Limiter(Protocol):
    """What a run's senders use of their limiter: ``RateLimiter``, or a Ray job's ``RemoteLimiter``."""

    @property
    def bucket(self) -> _HasRate: ...

    def try_acquire(self) -> bool: ...

    async def acquire(self) -> float: ...

    def throttled(self, retry_after: float | None = None) -> None: ...

    def succeeded(self) -> None: ...


class LimiterStats(NamedTuple):
    """A snapshot of a ``RateLimiter``."""

    granted: int  #: tokens handed out (cancelled waits that were given back do not count)
    throttles: int  #: 429s reported through ``throttled``
    rate: float | None  #: the current rate in requests per second; None while unlimited


class RateLimiter:
    """The async face of one ``TokenBucket``, shared by every sender worker.

    ``acquire()`` reserves a token, sleeps until it is due and returns how long that was. If a 429 paused the
    bucket meanwhile, the waiter moves back by the pause and sleeps again. A cancelled waiter gives its token
    back (see ``TokenBucket.cancel``), so shutting the pool down leaves nothing reserved.
    """

    __slots__ = ("_bucket", "_clock", "_sleep", "_waiters")

    def __init__(
        self,
        rate: float | None,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        **bucket_kwargs: Unpack[BucketOptions],
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(rate, burst, now=clock(), **bucket_kwargs)
        self._waiters = 0

    @property
    def bucket(self) -> TokenBucket:
        """The pure state, for inspection."""
        return self._bucket

    @property
    def stats(self) -> LimiterStats:
        """Counters for the run summary."""
        return LimiterStats(self._bucket.granted, self._bucket.throttles, self._bucket.rate)

    def try_acquire(self) -> bool:
        """Take a token without waiting if one is free right now; False (nothing taken) if it would wait.

        True only for an unlimited, unpaused bucket: the per-request cost of ``--rate unlimited`` is then one
        clock read and a counter, and no coroutine. A caller that gets False awaits ``acquire()``.
        """
        return self._bucket.take_free(self._clock())

    async def acquire(self) -> float:
        """Wait for one token; return the seconds waited."""
        bucket = self._bucket
        start = self._clock()
        if bucket.take_free(start):
            return 0.0
        due = start + bucket.reserve(start)
        seen = bucket.postponed
        self._waiters += 1
        try:
            while True:
                now = self._clock()
                # A 429 may have paused the bucket while we slept: keep our place, behind the pause.
                due += bucket.postponed - seen
                seen = bucket.postponed
                due = max(due, bucket.paused_until)
                if due <= now:
                    return max(0.0, now - start)
                await self._sleep(due - now)
        except BaseException:  # cancelled mid-wait: the token was never used
            bucket.cancel(self._clock(), due)
            raise
        finally:
            self._waiters -= 1

    def throttled(self, retry_after: float | None = None) -> None:
        """Report a 429; see ``TokenBucket.on_throttle``."""
        self._bucket.on_throttle(self._clock(), retry_after)

    def succeeded(self) -> None:
        """Report a success; see ``TokenBucket.on_success``."""
        self._bucket.on_success(self._clock())

    def __repr__(self) -> str:
        now = self._clock()
        bucket = self._bucket
        paused = max(0.0, bucket.paused_until - now)
        return (
            f"<RateLimiter rate={_fmt_rate(bucket.rate)} burst={bucket.burst} "
            f"tokens={bucket.available(now):.1f} paused={paused:.1f}s waiters={self._waiters}>"
        )
