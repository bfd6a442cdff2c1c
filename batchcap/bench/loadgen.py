"""Load generators for ``batchcap bench``: closed loop, open loop (Poisson arrivals), and a cold-start probe.

All three drive one ``send(i) -> Outcome`` callable and know nothing about HTTP, so they are tested with a
fake ``send``. Every loop is bounded in count *and* time and stops by itself:

* **closed loop**: exactly ``concurrency`` workers, each sending its next request when the previous one has
  answered, until ``count`` requests were sent or ``duration`` has passed. A worker honours ``Outcome.pause_s``
  after an error (the server's Retry-After, or a fixed pause after a 429), so a rate-limited API is never
  hammered in a tight loop of instant 429s.
* **open loop**: requests leave at precomputed Poisson arrival times (:func:`poisson_schedule`, pure and
  seeded), whether or not earlier ones have answered. Latency counts from the *scheduled* time, so a slow
  server cannot hide the queue it causes (coordinated omission). ``max_in_flight`` bounds the sockets; when it
  is full, sends wait and the wait shows up in the latency and in ``max_send_lag_s``.
* after ``duration``, requests still in flight get ``grace`` seconds, then are cancelled and counted as
  abandoned; ``deadline`` (an absolute clock value) cuts everything, for the bench's total time limit.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from batchcap.bench.stats import ColdStart, ErrorKind, Sample, StopReason
from batchcap.types import Clock

__all__ = ["Outcome", "Send", "StepRun", "closed_loop", "open_loop", "poisson_schedule", "probe_until_ok"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request gave, as ``send`` reports it. ``pause_s``: how long a closed-loop worker should wait."""

    ok: bool
    kind: ErrorKind | None = None
    status: int | None = None
    bytes_sent: int = 0
    pause_s: float = 0.0
    message: str | None = None  #: the error as the client worded it (already free of secrets)
    cost_usd: float | None = None  #: what a token-billed answer cost (its usage at its provider's price)


Send = Callable[[int], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class StepRun:
    """The raw result of one loop: samples in index order and why it stopped."""

    samples: tuple[Sample, ...]
    window_s: float  #: from the start until the loop ended (its last answer, or its duration cap)
    unsent: int
    abandoned: int
    stopped_by: StopReason


def poisson_schedule(
    rate: float, *, count: int, duration: float = math.inf, seed: int = 0
) -> list[float]:
    """Arrival times (seconds from 0) of a Poisson process of ``rate``/s: at most ``count``, all < ``duration``.

    Gaps are exponential with mean ``1/rate`` from ``random.Random(seed)``, so a schedule is reproducible and
    the first arrival comes one gap after 0, as in a Poisson process started at 0.
    """
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of arrivals/s (got {rate})")
    if count < 0:
        raise ValueError(f"count must be >= 0 (got {count})")
    rng = random.Random(seed)
    times: list[float] = []
    t = 0.0
    while len(times) < count:
        t += rng.expovariate(rate)
        if t >= duration:
            break
        times.append(t)
    return times


def _scope_deadline(clock: Clock, until: float) -> float:
    """Convert an absolute time on ``clock`` into anyio's clock, for a CancelScope deadline."""
    return anyio.current_time() + (until - clock())


def _stop_reason(scope: anyio.CancelScope, clock: Clock, deadline: float, timed_out: bool) -> StopReason:
    """Why a loop ended: the whole bench's deadline, the step's duration, or its request count."""
    if scope.cancelled_caught and clock() >= deadline:
        return "deadline"
    if timed_out or scope.cancelled_caught:
        return "duration"
    return "count"


def _finish(samples: list[Sample], elapsed: float, unsent: int, abandoned: int, stopped: StopReason) -> StepRun:
    samples.sort(key=lambda s: s.index)
    return StepRun(tuple(samples), elapsed, unsent, abandoned, stopped)


def _sample(i: int, scheduled: float, sent: float, done: float, outcome: Outcome) -> Sample:
    return Sample(
        index=i,
        scheduled=scheduled,
        sent=sent,
        done=done,
        ok=outcome.ok,
        kind=None if outcome.ok else (outcome.kind or "other"),
        status=outcome.status,
        bytes_sent=outcome.bytes_sent,
        cost_usd=outcome.cost_usd,
    )


async def closed_loop(
    send: Send,
    *,
    concurrency: int,
    count: int,
    duration: float = math.inf,
    grace: float = 60.0,
    deadline: float = math.inf,
    first_index: int = 0,
    clock: Clock = time.perf_counter,
) -> StepRun:
    """``concurrency`` workers share ``count`` requests; none starts after ``duration`` s."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1 (got {concurrency})")
    t0 = clock()
    stop_at = t0 + duration
    hard = min(deadline, stop_at + grace)
    samples: list[Sample] = []
    issued = 0
    abandoned = 0
    timed_out = False
    exhausted = anyio.Event()  # wakes resting workers when there is nothing left to send

    async def worker() -> None:
        nonlocal issued, abandoned, timed_out
        while issued < count:
            started = clock()
            if started >= stop_at:
                timed_out = True
                return
            i = issued
            issued += 1
            if issued >= count:
                exhausted.set()
            try:
                outcome = await send(first_index + i)
            except anyio.get_cancelled_exc_class():
                abandoned += 1
                raise
            done = clock()
            samples.append(_sample(i, started - t0, started - t0, done - t0, outcome))
            if outcome.pause_s > 0:
                with anyio.move_on_after(min(outcome.pause_s, max(0.0, stop_at - clock()))):
                    await exhausted.wait()

    with anyio.CancelScope(deadline=_scope_deadline(clock, hard)) as scope:
        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, max(count, 0))):
                tg.start_soon(worker)
    return _finish(samples, clock() - t0, 0, abandoned, _stop_reason(scope, clock, deadline, timed_out))


async def open_loop(
    send: Send,
    schedule: Sequence[float],
    *,
    max_in_flight: int = 256,
    duration: float = math.inf,
    grace: float = 60.0,
    deadline: float = math.inf,
    first_index: int = 0,
    clock: Clock = time.perf_counter,
) -> StepRun:
    """Send request ``i`` at ``schedule[i]`` s after the start, however the earlier ones are doing."""
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1 (got {max_in_flight})")
    t0 = clock()
    stop_at = t0 + duration
    slots = anyio.Semaphore(max_in_flight)
    samples: list[Sample] = []
    dispatched = 0
    abandoned = 0
    timed_out = False

    async def one(i: int, scheduled: float, sent: float) -> None:
        nonlocal abandoned
        try:
            outcome = await send(first_index + i)
        except anyio.get_cancelled_exc_class():
            abandoned += 1
            raise
        finally:
            slots.release()
        samples.append(_sample(i, scheduled, sent, clock() - t0, outcome))

    with anyio.CancelScope(deadline=_scope_deadline(clock, deadline)) as scope:
        async with anyio.create_task_group() as tg:
            for i, at in enumerate(schedule):
                if t0 + at >= stop_at:
                    timed_out = True
                    break
                wait = t0 + at - clock()
                if wait > 0:
                    await anyio.sleep(wait)
                await slots.acquire()
                if clock() >= stop_at:
                    slots.release()
                    timed_out = True
                    break
                tg.start_soon(one, i, at, clock() - t0)
                dispatched += 1
            # Everything is sent: what is still in flight gets `grace` seconds, not forever.
            scope.deadline = min(scope.deadline, anyio.current_time() + grace)
    return _finish(
        samples, clock() - t0, len(schedule) - dispatched, abandoned, _stop_reason(scope, clock, deadline, timed_out)
    )


async def probe_until_ok(
    send: Send,
    *,
    give_up_after: float,
    max_attempts: int = 1000,
    interval: float = 0.5,
    max_pause: float = 5.0,
    clock: Clock = time.perf_counter,
) -> ColdStart:
    """Send one request at a time until one succeeds: the time to first caption from the bench's first request.

    Between failures it waits ``interval`` s, or the server's hint (``Outcome.pause_s``) capped at ``max_pause``;
    it gives up after ``give_up_after`` s or ``max_attempts`` requests, whichever comes first.
    """
    t0 = clock()
    errors: dict[str, int] = {}
    attempts = 0
    last: str | None = None
    with anyio.move_on_after(give_up_after):
        while attempts < max_attempts:
            attempts += 1
            sent = clock()
            outcome = await send(attempts - 1)
            now = clock()
            if outcome.ok:
                return ColdStart(True, now - t0, attempts, errors, now - sent, last)
            last = outcome.message or last
            kind = outcome.kind or "other"
            errors[kind] = errors.get(kind, 0) + 1
            pause = max(interval, min(outcome.pause_s, max_pause))
            await anyio.sleep(min(pause, max(0.0, t0 + give_up_after - clock())))
    return ColdStart(False, None, attempts, errors, None, last)
