"""``check``'s pure parts: the wall-time / cost arithmetic and the upload-size model."""

from __future__ import annotations

import pytest

from batchcap.check import estimate


def test_rate_bound_run() -> None:
    e = estimate(104, target="t", concurrency=4, rate=2.0, burst=4, overhead_s=0.0)
    assert e.bound == "rate"
    assert e.wall_s == pytest.approx(50.0)
    assert e.latency_source == "unknown"
    assert any("lower bound" in n for n in e.notes)


def test_concurrency_bound_run_from_probe_latency() -> None:
    e = estimate(1000, target="t", concurrency=8, rate=100.0, burst=10, latency_s=0.4, overhead_s=0.0)
    assert e.bound == "concurrency"
    assert e.wall_s == pytest.approx(1000 * 0.4 / 8 + 0.4)
    assert e.images_per_s == pytest.approx(1000 / e.wall_s, rel=1e-3)


def test_unlimited_without_latency_is_unknown() -> None:
    e = estimate(10, target="t", concurrency=4, rate=None, burst=4)
    assert e.wall_s is None
    assert e.bound == "unknown"
    assert any("--probe" in n for n in e.notes)


def test_nothing_to_send() -> None:
    e = estimate(0, target="t", concurrency=4, rate=2.0, burst=4, price_per_hour=1.0)
    assert (e.wall_s, e.bound, e.cost) == (0.0, "none", 0.0)


def test_cost_is_wall_time_times_hourly_price() -> None:
    e = estimate(3604, target="t", concurrency=4, rate=1.0, burst=4, price_per_hour=0.6, overhead_s=0.0)
    assert e.cost == pytest.approx(0.6)
    assert estimate(5, target="t", concurrency=1, rate=1.0, burst=1).cost is None


def test_a_throttled_probe_is_noted() -> None:
    e = estimate(10, target="t", concurrency=1, rate=1.0, burst=1, latency_s=0.1, throttled=True)
    assert any("429" in n for n in e.notes)
