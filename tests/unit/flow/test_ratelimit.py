"""TokenBucket math with plain floats, RateLimiter on virtual time: no sockets, no real sleeps."""

from __future__ import annotations

import math

import anyio
import pytest
from fakes import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from batchcap.flow.ratelimit import LimiterStats, RateLimiter, TokenBucket


def drive(bucket: TokenBucket, times: list[float]) -> list[float]:
    return [round(bucket.reserve(t), 9) for t in times]


# --- TokenBucket: tables ----------------------------------------------------------------------------------


def test_burst_then_steady_rate() -> None:
    bucket = TokenBucket(2.0, 3, now=0.0)
    assert drive(bucket, [0.0] * 6) == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]
    assert bucket.level == -3.0
    assert bucket.granted == 6


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(2.0, 3, now=0.0)
    drive(bucket, [0.0] * 3)
    assert drive(bucket, [100.0] * 5) == [0.0, 0.0, 0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("times", "delays"),
    [
        ([0.0, 0.0, 0.25, 0.5, 0.5], [0.0, 0.5, 0.75, 1.0, 1.5]),  # a queue forms and drains at 2/s
        ([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]),  # callers slower than the rate never wait
        ([0.0, 0.1, 0.6, 5.0, 5.0], [0.0, 0.4, 0.4, 0.0, 0.5]),
    ],
)
def test_spacing_table(times: list[float], delays: list[float]) -> None:
    assert drive(TokenBucket(2.0, 1, now=0.0), times) == delays


def test_n_tokens_at_once() -> None:
    bucket = TokenBucket(4.0, 4, now=0.0)
    assert bucket.reserve(0.0, 3) == 0.0
    assert bucket.reserve(0.0, 3) == 0.5


def test_time_never_runs_backwards() -> None:
    bucket = TokenBucket(1.0, 1, now=10.0)
    assert bucket.reserve(10.0) == 0.0
    assert bucket.reserve(9.0) == 1.0  # counted at 10.0, not at 9.0


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(None, 1, now=0.0)
    assert drive(bucket, [0.0] * 100) == [0.0] * 100
    assert bucket.rate is None
    assert bucket.granted == 100


def test_pause_is_honoured_and_starts_from_an_empty_bucket() -> None:
    bucket = TokenBucket(4.0, 4, now=0.0, cooldown=1.0)
    assert drive(bucket, [0.0, 0.0]) == [0.0, 0.0]  # two tokens left in the bucket
    bucket.on_throttle(0.0, retry_after=3.0)  # 4/s -> 2/s, the saved tokens are dropped, pause to t=3
    assert (bucket.rate, bucket.level, bucket.paused_until) == (2.0, 0.0, 3.0)
    # Waiting inside the pause: the pause, then the queue at 2/s. Nothing refills during the pause.
    assert drive(bucket, [1.0, 1.0, 2.5]) == [2.5, 3.0, 2.0]
    assert bucket.reserve(10.0) == 0.0


def test_pause_pushes_pending_due_times_back_by_the_same_amount() -> None:
    bucket = TokenBucket(1.0, 1, now=0.0)
    assert drive(bucket, [0.0, 0.0]) == [0.0, 1.0]  # the second is due at t=1
    bucket.on_throttle(0.5, retry_after=2.0)  # pause 0.5 -> 2.5; rate 1/s -> 0.5/s
    assert bucket.postponed == 2.0  # the pending one is now due at 1.0 + 2.0 = 3.0
    # The next one lines up 1 / 0.5 = 2 s after it, not at the end of the pause.
    assert bucket.reserve(0.5) == pytest.approx(4.5)
    bucket.on_throttle(1.0, retry_after=3.0)  # extends the pause from 2.5 to 4.0: everything moves 1.5 s more
    assert (bucket.paused_until, bucket.postponed) == (4.0, 3.5)
    bucket.on_throttle(1.0, retry_after=1.0)  # a shorter hint never shortens a pause
    assert (bucket.paused_until, bucket.postponed) == (4.0, 3.5)


@pytest.mark.parametrize("retry_after", [None, 0.0, -3.0, math.nan, math.inf])
def test_no_usable_hint_means_no_pause(retry_after: float | None) -> None:
    bucket = TokenBucket(2.0, 1, now=0.0)
    bucket.on_throttle(0.0, retry_after)
    assert bucket.paused_until == -math.inf
    assert bucket.postponed == 0.0


def test_decrease_is_multiplicative_once_per_cooldown() -> None:
    bucket = TokenBucket(8.0, 1, now=0.0)
    rates = []
    for t in [0.0, 0.2, 0.5, 0.9, 1.0, 1.5, 2.5]:  # a storm of 429s from requests already in flight
        bucket.on_throttle(t)
        rates.append(bucket.rate)
    # default window max(1 s, 1/rate): decreases at 0.0, 1.0 and 2.5 only
    assert rates == [4.0, 4.0, 4.0, 4.0, 2.0, 2.0, 1.0]
    assert bucket.throttles == 7


def test_explicit_cooldown_and_floor() -> None:
    bucket = TokenBucket(1.0, 1, now=0.0, cooldown=0.0, min_rate=0.2, decrease=0.5)
    for t in range(10):
        bucket.on_throttle(float(t))
    assert bucket.rate == 0.2


def test_floor_never_raises_a_rate_configured_below_it() -> None:
    bucket = TokenBucket(0.01, 1, now=0.0, cooldown=0.0)
    bucket.on_throttle(0.0)
    assert bucket.rate == 0.01


def test_additive_recovery_back_to_the_ceiling_and_no_further() -> None:
    bucket = TokenBucket(8.0, 1, now=0.0)
    bucket.on_throttle(0.0)  # 8 -> 4; default step wins one halving back in 10 s: (8 - 4) / 10 = 0.4/s per s
    bucket.on_success(0.5)  # inside the cooldown (until t=1): responses to requests sent at the old rate
    assert bucket.rate == 4.0
    for i in range(1, 41):
        bucket.on_success(1.0 + i * 0.25)
    assert bucket.rate == pytest.approx(8.0)  # 4 + 0.4 * 10 s
    assert bucket.ceiling == 8.0
    bucket.on_success(100.0)
    assert bucket.rate == 8.0


def test_recovery_counts_seconds_not_calls() -> None:
    slow, busy = TokenBucket(10.0, 1, now=0.0), TokenBucket(10.0, 1, now=0.0)
    slow.on_throttle(0.0)
    busy.on_throttle(0.0)
    for i in range(1, 6):
        slow.on_success(1.0 + i)
    for i in range(1, 501):
        busy.on_success(1.0 + i / 100)
    assert slow.rate == pytest.approx(busy.rate) == pytest.approx(5.0 + 0.5 * 5)


def test_a_quiet_spell_does_not_jump_the_rate() -> None:
    bucket = TokenBucket(10.0, 1, now=0.0, increase=1.0)
    bucket.on_throttle(0.0)
    bucket.on_success(60.0)  # one success after a minute: counts one window (1 s), not 59
    assert bucket.rate == pytest.approx(6.0)


def test_no_growth_during_a_pause() -> None:
    bucket = TokenBucket(10.0, 1, now=0.0, increase=1.0)
    bucket.on_throttle(0.0, retry_after=30.0)
    bucket.on_success(20.0)
    assert bucket.rate == 5.0
    bucket.on_success(30.5)
    assert bucket.rate == pytest.approx(5.5)


def test_rate_change_keeps_pending_due_times() -> None:
    bucket = TokenBucket(2.0, 1, now=0.0, increase=100.0, cooldown=0.0)
    drive(bucket, [0.0] * 5)  # the last is due at t=2.0
    bucket.on_throttle(0.0)  # 2/s -> 1/s: the queue already handed out stays as it is ...
    assert bucket.reserve(0.0) == pytest.approx(3.0)  # ... and the next is 1 s after its end
    bucket.on_success(0.01)  # 1/s -> 2/s
    assert bucket.reserve(0.01) == pytest.approx(3.5 - 0.01)


def test_unlimited_becomes_limited_at_half_the_observed_rate() -> None:
    bucket = TokenBucket(None, 5, now=0.0)
    drive(bucket, [i * 0.05 for i in range(40)])  # 20 grants per second
    bucket.on_throttle(2.0)
    assert bucket.rate == pytest.approx(10.0)  # the last 32 grants over 1.6 s = 20/s, halved
    assert bucket.ceiling is None
    assert bucket.level == 0.0
    assert bucket.reserve(2.0) == pytest.approx(0.1)  # now it paces


def test_unlimited_recovers_to_unlimited_past_the_peak() -> None:
    bucket = TokenBucket(None, 5, now=0.0)
    drive(bucket, [i * 0.05 for i in range(40)])
    bucket.on_throttle(2.0)  # 10/s, peak 20/s, step (20 - 10) / 10 s = 1/s per s
    for t in range(3, 14):  # growth starts when the cooldown ends at t=3
        bucket.on_success(float(t))
    assert bucket.rate == pytest.approx(20.0)
    bucket.on_success(14.0)
    assert bucket.rate is None
    assert bucket.reserve(14.0) == 0.0


def test_originally_unlimited_throttled_again_while_limited() -> None:
    bucket = TokenBucket(None, 5, now=0.0)
    drive(bucket, [i * 0.05 for i in range(40)])
    bucket.on_throttle(2.0)
    bucket.on_throttle(3.5)  # cooldown over (1 s): 10 -> 5, and 10 is the new peak to pass
    assert bucket.rate == pytest.approx(5.0)
    for t in range(5, 16):
        bucket.on_success(float(t))
    assert bucket.rate is None


def test_cancel_gives_the_newest_token_back() -> None:
    bucket = TokenBucket(1.0, 1, now=0.0)
    assert drive(bucket, [0.0, 0.0, 0.0]) == [0.0, 1.0, 2.0]
    assert bucket.cancel(0.5, 2.0)  # newest first, any number of them
    assert bucket.cancel(0.5, 1.0)
    assert not bucket.cancel(0.5, 0.0)  # that one never waited
    assert bucket.granted == 1
    assert bucket.reserve(0.5) == 0.5  # as if the two had never asked


def test_cancel_in_the_middle_of_the_queue_wastes_the_slot() -> None:
    bucket = TokenBucket(1.0, 1, now=0.0)
    drive(bucket, [0.0, 0.0, 0.0])
    assert not bucket.cancel(0.5, 1.0)  # not the newest: handing its slot on would double-book t=2
    assert bucket.reserve(0.5) == 2.5
    assert not bucket.cancel(3.0, 2.0)  # already due: nothing left to give back
    assert not TokenBucket(None, 1, now=0.0).cancel(0.0, 1.0)


def test_cancel_during_a_pause_does_not_refill() -> None:
    bucket = TokenBucket(1.0, 2, now=0.0, cooldown=0.0)
    due = bucket.reserve(0.0, 2) + bucket.reserve(0.0)
    bucket.on_throttle(0.0, retry_after=5.0)
    assert bucket.cancel(1.0, due + bucket.postponed)
    assert bucket.level == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 0.0}, "rate must be > 0"),
        ({"rate": -1.0}, "rate must be > 0"),
        ({"rate": math.nan}, "rate must be > 0"),
        ({"burst": 0}, "burst must be an int >= 1"),
        ({"burst": 1.5}, "burst must be an int >= 1"),
        ({"min_rate": 0.0}, "min_rate must be > 0"),
        ({"decrease": 1.0}, "decrease must be between 0 and 1"),
        ({"decrease": 0.0}, "decrease must be between 0 and 1"),
        ({"increase": -1.0}, "increase must be >= 0"),
        ({"cooldown": math.inf}, "cooldown must be >= 0"),
    ],
)
def test_invalid_settings_say_what_to_do(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"rate": 1.0, "burst": 1, "now": 0.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        TokenBucket(**args)  # type: ignore[arg-type]


def test_infinite_rate_means_unlimited() -> None:
    assert TokenBucket(math.inf, 1, now=0.0).rate is None


@pytest.mark.parametrize("n", [0, 4, True])
def test_reserve_rejects_impossible_amounts(n: int) -> None:
    with pytest.raises(ValueError, match="raise burst"):
        TokenBucket(1.0, 3, now=0.0).reserve(0.0, n)


def test_bucket_repr_shows_live_state() -> None:
    bucket = TokenBucket(5.0, 10, now=0.0)
    drive(bucket, [0.0] * 12)
    assert repr(bucket) == (
        "<TokenBucket rate=5.0/s ceiling=5.0/s burst=10 level=-2.00@0 paused_until=-inf "
        "granted=12 throttles=0>"
    )
    assert bucket.available(0.12) == pytest.approx(-1.4)
    assert bucket.level == -2.0  # available() does not change state


# --- TokenBucket: the rate bound for any schedule ---------------------------------------------------------

_TOLERANCE = 1e-6


def assert_within_bound(sends: list[tuple[float, int]], burst: int, rate: float) -> None:
    """Over every window [a, b] spanned by two sends, at most ``burst + rate * (b - a)`` tokens become due."""
    sends = sorted(sends)
    for i, (start, _) in enumerate(sends):
        total = 0
        for end, n in sends[i:]:
            total += n
            assert total <= burst + rate * (end - start) + _TOLERANCE, (start, end, total)


_steps = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)
_plain_ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), _steps, st.integers(1, 4)),
        st.tuples(st.just("cancel"), _steps, st.integers(0, 5)),
    ),
    max_size=50,
)
_adaptive_ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), _steps, st.integers(1, 4)),
        st.tuples(st.just("cancel"), _steps, st.integers(0, 5)),
        st.tuples(st.just("throttle"), _steps, st.one_of(st.none(), st.floats(0.0, 5.0))),
        st.tuples(st.just("success"), _steps, st.none()),
    ),
    max_size=50,
)


def simulate(
    bucket: TokenBucket, ops: list[tuple[str, float, int | float | None]]
) -> list[tuple[float, int]]:
    """Play ``ops`` the way RateLimiter does and return when each token became due, and how many."""
    now = 0.0
    pending: list[list[float]] = []  # [due, n] of waiters still asleep
    sends: list[tuple[float, int]] = []
    for op, step, arg in ops:
        now += step
        for waiter in [w for w in pending if w[0] <= now]:
            pending.remove(waiter)
            sends.append((waiter[0], int(waiter[1])))
        if op == "reserve":
            assert isinstance(arg, int)
            n = min(arg, bucket.burst)
            pending.append([now + bucket.reserve(now, n), n])
        elif op == "cancel" and pending:
            assert isinstance(arg, int)
            waiter = sorted(pending)[-1 - arg % len(pending)]
            if bucket.cancel(now, waiter[0]):
                pending.remove(waiter)
            else:  # only the newest can be given back exactly (and must be)
                assert waiter is not max(pending)
        elif op == "throttle":
            before = bucket.postponed
            bucket.on_throttle(now, arg)
            for waiter in pending:  # what each sleeping waiter does when it wakes
                waiter[0] = max(waiter[0] + bucket.postponed - before, bucket.paused_until)
        elif op == "success":
            bucket.on_success(now)
    return sends + [(due, int(n)) for due, n in pending]


@settings(deadline=None)  # 20k examples each passed once; the default 100 guards regressions
@given(rate=st.floats(0.1, 50.0), burst=st.integers(1, 5), ops=_plain_ops)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, ops: list[tuple[str, float, int | float | None]]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    assert_within_bound(simulate(bucket, ops), burst, rate)


@settings(deadline=None)  # 20k examples each passed once; the default 100 guards regressions
@given(rate=st.floats(0.1, 50.0), burst=st.integers(1, 5), ops=_adaptive_ops)
def test_adapting_never_exceeds_the_ceiling_bound(
    rate: float, burst: int, ops: list[tuple[str, float, int | float | None]]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0, increase=2.0 * rate, cooldown=0.3)
    assert_within_bound(simulate(bucket, ops), burst, rate)
    assert bucket.rate is not None
    assert bucket.rate <= rate


# --- RateLimiter ------------------------------------------------------------------------------------------


async def test_acquire_waits_on_the_injected_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock, sleep=clock.sleep)
    waits = [await limiter.acquire() for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    assert clock.now == 1.5
    assert limiter.stats == LimiterStats(granted=6, throttles=0, rate=2.0)


async def test_unlimited_acquire_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, 1, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        assert await limiter.acquire() == 0.0
    assert clock.sleeps == []


async def test_a_pause_that_starts_while_asleep_is_waited_out() -> None:
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.sleeps.append(seconds)
        if len(clock.sleeps) == 1:  # a 429 with Retry-After: 4 arrives a quarter second into our nap
            clock.advance(0.25)
            limiter.throttled(4.0)
            clock.advance(seconds - 0.25)
        else:
            clock.advance(seconds)

    limiter = RateLimiter(1.0, 1, clock=clock, sleep=sleep)
    assert await limiter.acquire() == 0.0
    waited = await limiter.acquire()  # due at 1.0, then the pause: 0.25 -> 4.25
    assert limiter.bucket.paused_until == 4.25
    # It keeps its place behind the pause: 0.75 s of its wait was still ahead when the pause began.
    assert clock.sleeps == [1.0, 4.0]
    assert waited == clock.now == 5.0


async def test_one_throttle_pauses_every_waiter() -> None:
    time = FakeClock(scheduled=True)
    limiter = RateLimiter(2.0, 1, clock=time, sleep=time.sleep)
    sent: list[tuple[str, float]] = []

    async def worker(name: str) -> None:
        await limiter.acquire()
        sent.append((name, time.now))

    async def service() -> None:
        await time.sleep(0.25)
        limiter.throttled(2.0)  # 2/s -> 1/s, and nobody sends before t=2.25
        await worker("late")

    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(worker, name)
        tg.start_soon(service)
        await time.run()
    assert sent == [("a", 0.0), ("b", 2.5), ("c", 3.0), ("late", 4.0)]


async def test_workers_share_one_rate() -> None:
    time = FakeClock(scheduled=True)
    limiter = RateLimiter(4.0, 2, clock=time, sleep=time.sleep)
    sent: list[float] = []

    async def worker() -> None:
        for _ in range(3):
            await limiter.acquire()
            sent.append(time.now)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(worker)
        await time.run()
    assert sorted(sent) == pytest.approx([0.0, 0.0] + [0.25 * i for i in range(1, 11)])


async def test_cancelled_waiter_gives_its_token_back() -> None:
    time = FakeClock(scheduled=True)
    limiter = RateLimiter(1.0, 1, clock=time, sleep=time.sleep)
    assert await limiter.acquire() == 0.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        assert limiter.bucket.level == -1.0
        assert "waiters=1" in repr(limiter)
        tg.cancel_scope.cancel()
    assert "waiters=0" in repr(limiter)
    assert limiter.stats.granted == 1
    assert limiter.bucket.reserve(time.now) == 1.0  # not 2.0: no reservation leaked


async def test_throttled_and_succeeded_use_the_clock() -> None:
    clock = FakeClock(100.0)
    limiter = RateLimiter(4.0, 1, clock=clock, sleep=clock.sleep, increase=1.0)
    limiter.throttled(3.0)
    assert limiter.bucket.paused_until == 103.0
    assert limiter.stats == LimiterStats(granted=0, throttles=1, rate=2.0)
    clock.advance(5.0)
    limiter.succeeded()
    assert limiter.bucket.rate == pytest.approx(3.0)


def test_limiter_repr() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5.0, 10, clock=clock, sleep=clock.sleep)
    for _ in range(12):
        limiter.bucket.reserve(clock())
    clock.advance(0.12)
    assert repr(limiter) == "<RateLimiter rate=5.0/s burst=10 tokens=-1.4 paused=0.0s waiters=0>"
    limiter.throttled(30.0)
    assert repr(limiter) == "<RateLimiter rate=2.5/s burst=10 tokens=-0.7 paused=30.0s waiters=0>"
    assert repr(RateLimiter(None, 1, clock=clock)).startswith(
        "<RateLimiter rate=unlimited burst=1 tokens=1.0"
    )
