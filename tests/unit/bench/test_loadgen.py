"""The load generators against a fake ``send``: send times, bounds, and latency from the scheduled time.

No sockets. The loop tests sleep for real but briefly (tens of milliseconds each); the schedule tests are pure.
"""

from __future__ import annotations

import itertools
import math
import random

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchcap.bench.loadgen import Outcome, closed_loop, open_loop, poisson_schedule, probe_until_ok

# --- the open-loop schedule (pure) ---------------------------------------------------------------------------


def test_schedule_is_the_seeded_exponential_gaps() -> None:
    rng = random.Random(7)
    expected, t = [], 0.0
    for _ in range(5):
        t += rng.expovariate(4.0)
        expected.append(t)
    assert poisson_schedule(4.0, count=5, seed=7) == expected
    assert poisson_schedule(4.0, count=5, seed=7) == poisson_schedule(4.0, count=5, seed=7)  # reproducible
    assert poisson_schedule(4.0, count=5, seed=8) != expected


def test_schedule_bounds() -> None:
    assert len(poisson_schedule(10.0, count=25)) == 25
    assert poisson_schedule(10.0, count=0) == []
    within = poisson_schedule(10.0, count=10_000, duration=3.0, seed=1)
    assert within
    assert max(within) < 3.0
    assert 15 < len(within) < 50  # ~30 arrivals in 3 s at 10/s


def test_schedule_has_poisson_statistics() -> None:
    rate, n = 20.0, 20_000
    times = poisson_schedule(rate, count=n, seed=3)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    mean = sum(gaps) / n
    assert mean == pytest.approx(1 / rate, rel=0.03)
    # exponential: P(gap < mean) = 1 - 1/e, and the standard deviation equals the mean
    assert sum(g < 1 / rate for g in gaps) / n == pytest.approx(1 - math.exp(-1), abs=0.015)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / n)
    assert sd == pytest.approx(mean, rel=0.05)


@given(st.floats(0.01, 1000), st.integers(0, 300), st.floats(0.0, 50), st.integers(0, 2**32))
def test_schedule_properties(rate: float, count: int, duration: float, seed: int) -> None:
    times = poisson_schedule(rate, count=count, duration=duration, seed=seed)
    assert len(times) <= count
    assert all(0 < t < duration for t in times)
    assert all(a < b for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_schedule_rejects_bad_rates(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        poisson_schedule(rate, count=3)


# --- closed loop ---------------------------------------------------------------------------------------------


class FakeService:
    """Answers after ``delay`` s; records how many requests were in flight at once and which indices came."""

    def __init__(self, delay: float = 0.0, outcome: Outcome | None = None) -> None:
        self.delay = delay
        self.outcome = outcome or Outcome(True, status=200, bytes_sent=10)
        self.in_flight = 0
        self.peak = 0
        self.seen: list[int] = []

    async def __call__(self, i: int) -> Outcome:
        self.seen.append(i)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return self.outcome


async def test_closed_loop_runs_exactly_c_workers_for_count_requests() -> None:
    svc = FakeService(delay=0.002)
    run = await closed_loop(svc, concurrency=4, count=40)
    assert svc.peak == 4
    assert sorted(svc.seen) == list(range(40))
    assert [x.index for x in run.samples] == list(range(40))
    assert run.stopped_by == "count"
    assert all(x.ok and x.scheduled == x.sent and x.done > x.sent for x in run.samples)
    assert run.window_s >= max(x.done for x in run.samples)


async def test_closed_loop_stops_at_its_duration() -> None:
    svc = FakeService(delay=0.01)
    run = await closed_loop(svc, concurrency=2, count=10_000, duration=0.06)
    assert run.stopped_by == "duration"
    assert 4 <= len(run.samples) <= 16
    assert all(x.sent < 0.06 for x in run.samples)  # nothing starts after the cap


async def test_closed_loop_cancels_in_flight_after_grace() -> None:
    svc = FakeService(delay=10.0)
    with anyio.fail_after(2):
        run = await closed_loop(svc, concurrency=3, count=10, duration=0.01, grace=0.05)
    assert run.samples == ()
    assert run.abandoned == 3
    assert run.stopped_by == "duration"


async def test_closed_loop_deadline() -> None:
    import time

    svc = FakeService(delay=10.0)
    with anyio.fail_after(2):
        run = await closed_loop(svc, concurrency=2, count=10, deadline=time.perf_counter() + 0.05)
    assert run.abandoned == 2
    assert run.stopped_by == "deadline"


async def test_closed_loop_rests_after_throttling_but_not_past_the_end() -> None:
    svc = FakeService(outcome=Outcome(False, "429", 429, 10, pause_s=0.05))
    run = await closed_loop(svc, concurrency=1, count=3)
    sends = [x.sent for x in run.samples]
    assert [b - a for a, b in itertools.pairwise(sends)] == [pytest.approx(0.05, abs=0.03)] * 2
    assert run.window_s < 0.14  # no rest after the last request
    assert all(x.kind == "429" for x in run.samples)


# --- open loop -----------------------------------------------------------------------------------------------


async def test_open_loop_sends_on_schedule_regardless_of_answers() -> None:
    schedule = [0.01 * k for k in range(1, 11)]
    svc = FakeService(delay=0.05)  # slower than the arrivals: a closed loop of 1 would fall behind
    run = await open_loop(svc, schedule, max_in_flight=100)
    assert [x.scheduled for x in run.samples] == schedule
    assert all(0 <= x.sent - x.scheduled < 0.02 for x in run.samples)
    assert svc.peak >= 4  # several in flight at once: arrivals do not wait for answers
    assert run.unsent == 0
    assert run.stopped_by == "count"


async def test_open_loop_latency_counts_queueing_from_the_scheduled_time() -> None:
    """One slot, 30 ms service, arrivals every 10 ms: request k waits for the k before it (no coordinated omission)."""
    schedule = [0.01 * k for k in range(5)]
    run = await open_loop(FakeService(delay=0.03), schedule, max_in_flight=1)
    latencies = [x.latency for x in run.samples]
    for k, latency in enumerate(latencies):
        assert latency == pytest.approx(0.03 * (k + 1) - 0.01 * k, abs=0.015)  # 30, 50, 70, 90, 110 ms
    assert all(b > a for a, b in itertools.pairwise(latencies))
    assert run.samples[-1].sent - run.samples[-1].scheduled == pytest.approx(0.08, abs=0.015)


async def test_open_loop_duration_leaves_arrivals_unsent() -> None:
    schedule = [0.01 * k for k in range(1, 101)]
    run = await open_loop(FakeService(), schedule, duration=0.05)
    assert run.stopped_by == "duration"
    assert len(run.samples) + run.unsent == 100
    assert 3 <= len(run.samples) <= 5


async def test_open_loop_abandons_what_outlives_grace() -> None:
    with anyio.fail_after(2):
        run = await open_loop(FakeService(delay=10.0), [0.0, 0.001, 0.002], grace=0.05)
    assert run.abandoned == 3
    assert run.samples == ()


# --- cold start probe ----------------------------------------------------------------------------------------


async def test_probe_until_first_success() -> None:
    answers = [Outcome(False, "503", 503, pause_s=0.0)] * 3 + [Outcome(True, status=200)]

    async def send(i: int) -> Outcome:
        return answers[i]

    cold = await probe_until_ok(send, give_up_after=2.0, interval=0.01)
    assert cold.ok
    assert cold.attempts == 4
    assert cold.errors == {"503": 3}
    assert cold.seconds is not None
    assert 0.03 <= cold.seconds < 0.5


async def test_probe_gives_up_by_count_and_by_time() -> None:
    async def never(i: int) -> Outcome:
        return Outcome(False, "429", 429, pause_s=100.0)  # a huge hint is capped

    cold = await probe_until_ok(never, give_up_after=5.0, max_attempts=3, interval=0.0, max_pause=0.01)
    assert (cold.ok, cold.attempts, cold.seconds) == (False, 3, None)
    with anyio.fail_after(1):
        cold = await probe_until_ok(never, give_up_after=0.05, interval=0.01)
    assert not cold.ok
