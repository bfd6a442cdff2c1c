"""The bench's words: the verdict paragraph and the duration formatter, on summaries built by hand."""

from __future__ import annotations

import pytest
from bench_builders import step, target

from batchcap.bench.verdict import cheapest, format_duration, still_climbing, verdict


def test_verdict_names_the_faster_target_its_concurrency_and_cost() -> None:
    free = target("free", [step(1, 3.5, 0.3, price=0.0), step(2, 3.9, 0.3, n429=10, price=0.0)], 0.0)
    paid = target("endpoint", [step(1, 12, 0.1, price=0.6), step(8, 90, 0.12, price=0.6),
                               step(16, 100, 0.5, price=0.6)], 0.6)
    text = verdict([free, paid], 2.0)
    assert text.startswith("**endpoint** is the faster choice: 100.0 images/s at concurrency 16")
    assert "25.6x free's best of 3.9 images/s at concurrency 2" in text
    assert "$0.60/h" in text
    assert "$0.0017 per 1,000 images" in text  # 0.6 / (100 * 3600) * 1000
    assert "600,000 images per dollar" in text
    assert "free is free" in text
    assert "rate limited) from concurrency 2 on" in text
    assert "12,600 images/hour before being rate limited" in text
    assert "Time to first caption from idle: free 1.5 s, endpoint 1.5 s" in text
    assert "still rising" not in text  # 90 -> 100 is not a climb


def test_verdict_says_when_the_sweep_stopped_too_early() -> None:
    paid = target("endpoint", [step(4, 40, 0.1), step(8, 80, 0.1)], None)
    text = verdict([paid], 2.0)
    assert "still rising at concurrency 8" in text
    assert still_climbing(paid) is not None
    assert "no --price-per-hour" in text


def test_verdict_without_any_step_in_slo() -> None:
    slow = target("slow", [step(1, 1, 5.0), step(2, 2, 9.0)], None)
    text = verdict([slow], 2.0)
    assert text.startswith("No target kept its p95 latency within the 2 s SLO")
    assert "5.00 s (slow at concurrency 1)" in text
    assert verdict([], 2.0).startswith("No target returned")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(42, "42 s"), (89.4, "89 s"), (600, "10.0 min"), (3 * 3600, "3.0 h"), (5 * 86400, "5.0 days")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_verdict_names_the_cheapest_target_within_the_slo_whatever_it_bills_by() -> None:
    """Free API vs Endpoint vs a router provider in one comparison: the cheapest that keeps the SLO wins."""
    from dataclasses import replace

    paid = target("endpoint", [step(8, 90, 0.12, price=0.6)], 0.6)  # $0.60/h at 90 img/s = $0.00185 / 1k
    router = replace(target("router", [replace(step(8, 20, 0.5), cost_per_1000=0.0012, images_per_dollar=833_333)],
                            None), pricing="novita $0.2 in / $0.8 out per 1M tokens (router/v1/models)")
    slow_free = target("free", [step(1, 3, 9.0, price=0.0)], 0.0)  # free, but never within the SLO
    text = verdict([paid, router, slow_free], 2.0)
    assert "The cheapest within the 2 s SLO is **router** at $0.0012 per 1,000 images (endpoint $0.0019)." in text
    assert "Billed by the token, router costs $0.0012 per 1,000 images (its answers' measured usage" in text
    free = target("free", [step(1, 3, 0.3, price=0.0)], 0.0)
    assert "cheapest within the 2 s SLO is **free** at $0" in verdict([paid, router, free], 2.0)
    unknown = target("mystery", [step(8, 50, 0.2)], None)
    assert "No price known for mystery." in verdict([paid, router, unknown], 2.0)
    assert cheapest([paid, unknown]) is None  # one priced target: nothing to compare


def test_a_space_that_did_not_run_out_still_gets_the_zerogpu_caveat_when_a_pro_day_is_too_small() -> None:
    from dataclasses import replace as _replace

    from batchcap.bench.verdict import space_caveat

    base = _target_for_caveat()
    slow = _replace(base, description="space:acme/blip")
    line = space_caveat(slow, 10_000)
    assert line is not None
    assert "a PRO quota of 25 GPU minutes a day covers about 750 images at its median 2.00 s each" in line
    assert space_caveat(_replace(base, description="endpoint:https://x"), 10_000) is None
    assert space_caveat(slow, 500) is None  # a small set fits


def _target_for_caveat():  # type: ignore[no-untyped-def]
    from dataclasses import replace as _replace

    s = step(1, 0.5, 2.5)
    assert s.latency is not None
    return target("space", [_replace(s, latency=_replace(s.latency, p50=2.0))], 0.0)
