"""The bench's maths on inputs small enough to check by hand."""

from __future__ import annotations

import math

import pytest
from bench_builders import s, step
from hypothesis import given, settings
from hypothesis import strategies as st

from batchcap.bench.stats import (
    Sample,
    cost_per_1000,
    images_per_dollar,
    knee,
    percentile,
    summarize_latency,
    summarize_step,
    throttle_summary,
    token_cost_per_1000,
)

# --- percentiles: numpy's default "linear" method, h = (n - 1) * q / 100 -------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 50, 2.5),  # h = 1.5: halfway between 2 and 3
        ([1, 2, 3, 4], 90, 3.7),  # h = 2.7: 3 + 0.7 * (4 - 3)
        ([1, 2, 3, 4], 95, 3.85),  # h = 2.85
        ([1, 2, 3, 4], 99, 3.97),  # h = 2.97
        ([1, 2, 3, 4], 100, 4.0),
        ([4, 1, 3, 2], 50, 2.5),  # order of the input does not matter
        ([15, 20, 35, 40, 50], 40, 29.0),  # h = 1.6: 20 + 0.6 * (35 - 20)
        ([0.1] * 7, 99, 0.1),
        ([7.0], 95, 7.0),
        ([0.2, 0.4], 95, 0.39),  # h = 0.95: 0.2 + 0.95 * 0.2
    ],
)
def test_percentile_by_hand(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


@settings(deadline=None)  # the first example imports numpy: seconds on a loaded 2-core machine
@given(
    st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=60),
    st.floats(min_value=0, max_value=100),
)
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    np = pytest.importorskip("numpy")
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


def test_latency_summary() -> None:
    lat = summarize_latency([0.4, 0.1, 0.3, 0.2])
    assert lat is not None
    assert (lat.count, lat.min, lat.max) == (4, 0.1, 0.4)
    assert lat.mean == pytest.approx(0.25)
    assert lat.p50 == pytest.approx(0.25)
    assert lat.p95 == pytest.approx(0.385)
    assert summarize_latency([]) is None  # "no data" never reads as 0 s


# --- cost ----------------------------------------------------------------------------------------------------


def test_cost_per_1000_images() -> None:
    # $0.60/h at 10 images/s: 36,000 images per hour -> $0.60 / 36 = $0.01667 per 1,000
    assert cost_per_1000(0.60, 10.0) == pytest.approx(0.60 / 36)
    assert images_per_dollar(0.60, 10.0) == pytest.approx(60_000)
    # $4.50/h at 2.5 images/s: 9,000/h -> $0.50 per 1,000; 2,000 images per dollar
    assert cost_per_1000(4.50, 2.5) == pytest.approx(0.5)
    assert images_per_dollar(4.50, 2.5) == pytest.approx(2000)


def test_cost_edge_cases() -> None:
    assert cost_per_1000(0.0, 3.0) == 0.0  # free
    assert images_per_dollar(0.0, 3.0) is None  # unbounded, reported as "free"
    assert cost_per_1000(None, 3.0) is None  # no price given
    assert images_per_dollar(None, 3.0) is None
    assert cost_per_1000(0.6, 0.0) is None  # nothing succeeded: no finite cost
    assert images_per_dollar(0.6, 0.0) is None


@given(st.floats(min_value=0.01, max_value=100), st.floats(min_value=0.01, max_value=1e4))
def test_cost_and_images_per_dollar_are_inverse(price: float, rate: float) -> None:
    cost, per_dollar = cost_per_1000(price, rate), images_per_dollar(price, rate)
    assert cost is not None
    assert per_dollar is not None
    assert cost * per_dollar == pytest.approx(1000)


# --- one step ------------------------------------------------------------------------------------------------


def test_summarize_step_by_hand() -> None:
    samples = [
        s(0, 0.0, 0.5),
        s(1, 0.5, 1.5),
        s(2, 1.0, 1.01, ok=False, kind="429"),
        s(3, 1.5, 2.0),
        s(4, 2.0, 2.1, ok=False, kind="timeout"),
        s(5, 2.0, 4.0, sent=3.0),  # waited 1 s for a slot: latency counts from 2.0
    ]
    warm = [s(0, 0.0, 3.0), s(1, 0.0, 0.1, ok=False, kind="503")]
    st_ = summarize_step(samples, mode="open", level=2.0, price_per_hour=0.36, window_s=4.0, warmup_samples=warm,
                         min_throttle_window_s=1.0)
    assert (st_.requests, st_.ok, st_.failed) == (6, 4, 2)
    assert st_.errors == {"429": 1, "503": 0, "5xx": 0, "timeout": 1, "other": 0}
    assert st_.images_per_s == pytest.approx(1.0)  # 4 successes / 4 s
    assert st_.sent_per_s == pytest.approx(1.5)
    assert st_.latency is not None
    assert st_.latency.max == pytest.approx(2.0)  # from the scheduled time, not the send
    assert st_.latency.p50 == pytest.approx(0.75)  # [0.5, 0.5, 1.0, 2.0]
    assert st_.max_send_lag_s == pytest.approx(1.0)
    assert st_.bytes_sent == 6000
    assert st_.cost_per_1000 == pytest.approx(0.1)  # $0.36/h at 3,600 images/h
    assert st_.images_per_dollar == pytest.approx(10_000)
    assert st_.first_429_s == pytest.approx(1.01)
    assert st_.images_per_hour_before_429 == pytest.approx(1 / 1.01 * 3600)  # one caption before the 429
    assert st_.warmup.requests == 2
    assert st_.warmup.ok == 1
    assert st_.warmup.errors["503"] == 1
    assert st_.warmup.latency is not None
    assert st_.warmup.latency.max == 3.0  # the slow warm-up is not in the step's figures


def test_summarize_step_with_nothing_ok() -> None:
    st_ = summarize_step([s(0, 0, 0.1, ok=False, kind="5xx")], mode="closed", level=1, price_per_hour=1.0)
    assert st_.latency is None
    assert st_.images_per_s == 0
    assert st_.cost_per_1000 is None
    assert st_.images_per_hour_before_429 is None


def test_throttle_too_early_to_measure() -> None:
    st_ = summarize_step([s(0, 0, 0.3), s(1, 0, 0.01, ok=False, kind="429")], mode="closed", level=2)
    assert st_.first_429_s == pytest.approx(0.01)
    assert st_.images_per_hour_before_429 is None  # a 10 ms window says nothing about an hour


# --- knee, throttling -----------------------------------------------------------------------------------------


def test_knee_is_best_throughput_within_slo() -> None:
    steps = [step(1, 10, 0.1), step(2, 19, 0.15), step(4, 35, 0.4), step(8, 60, 1.9), step(16, 70, 2.5)]
    k = knee(steps, 2.0)
    assert k is not None
    assert k.level == 8  # 16 is faster but breaks the SLO


def test_knee_prefers_the_lowest_level_within_noise() -> None:
    # a rate-limited API: same images/s from 2 on, only more 429s
    steps = [step(1, 3.0, 0.3), step(2, 3.9, 0.3), step(4, 4.0, 0.3, n429=50), step(8, 4.05, 0.3, n429=200)]
    k = knee(steps, 2.0)
    assert k is not None
    assert k.level == 2  # within 5 % of the best (4.05)
    few = [step(1, 3.6, 0.3, ok=15), step(16, 3.9, 0.3, ok=13, n429=62)]  # 13 successes: ~28 % noise
    k = knee(few, 2.0)
    assert k is not None
    assert k.level == 1


def test_knee_none_when_nothing_meets_slo() -> None:
    assert knee([step(1, 10, 3.0), step(2, 20, 4.0)], 2.0) is None
    assert knee([], 2.0) is None


def test_throttle_summary() -> None:
    steps = [step(1, 3.5, 0.3), step(2, 3.9, 0.3), step(4, 4.0, 0.3, n429=20), step(8, 4.1, 0.3, n429=90)]
    th = throttle_summary(steps)
    assert th.throttled
    assert th.first_throttled_level == 4
    assert th.images_per_hour_unthrottled == pytest.approx(3.9 * 3600)
    assert th.images_per_hour_throttled == pytest.approx(4.1 * 3600)
    assert not throttle_summary([step(1, 10, 0.1)]).throttled


def test_sample_latency_is_from_schedule() -> None:
    assert Sample(0, 1.0, 1.5, 2.25, True).latency == 1.25
    assert math.isclose(Sample(0, 0.0, 0.0, 0.1, True).latency, 0.1)


def test_a_token_billed_step_costs_its_answers_measured_usage() -> None:
    samples = [Sample(i, 0.0, 0.0, 0.5, True, cost_usd=c) for i, c in enumerate((0.0001, 0.0003, None))]
    samples.append(Sample(3, 0.0, 0.0, 0.5, False, kind="5xx"))
    st_ = summarize_step(samples, mode="closed", level=4, window_s=1.0, token_billed=True)
    assert st_.cost_per_1000 == pytest.approx(0.2)  # 1000 x the mean of the priced answers; unpriced left out
    assert st_.images_per_dollar == pytest.approx(5000)
    assert token_cost_per_1000([None, None]) is None
    assert summarize_step(samples, mode="closed", level=4, window_s=1.0).cost_per_1000 is None  # not token billed
