"""Small bench summaries built by hand, shared by the stats and verdict tests."""

from __future__ import annotations

from dataclasses import replace

from batchcap.bench.stats import (
    ColdStart,
    Sample,
    StepRecord,
    StepStats,
    TargetResult,
    cost_per_1000,
    images_per_dollar,
    knee,
    summarize_step,
    throttle_summary,
)


def s(i: int, sched: float, done: float, ok: bool = True, kind: str | None = None, sent: float | None = None) -> Sample:
    return Sample(i, sched, sched if sent is None else sent, done, ok, kind if not ok else None,  # type: ignore[arg-type]
                  200 if ok else 429, 1000)


_BASE = summarize_step([s(i, 0, 0.1) for i in range(100)], mode="closed", level=1, window_s=1.0)


def step(level: float, ips: float, p95: float, *, ok: int = 400, n429: int = 0, price: float | None = None,
         mode: str = "closed") -> StepStats:
    assert _BASE.latency is not None
    return replace(
        _BASE, mode=mode, level=level, images_per_s=ips, ok=ok, requests=ok + n429,  # type: ignore[arg-type]
        latency=replace(_BASE.latency, p95=p95),
        errors={**_BASE.errors, "429": n429},
        cost_per_1000=cost_per_1000(price, ips), images_per_dollar=images_per_dollar(price, ips),
    )


def target(name: str, steps: list[StepStats], price: float | None, slo: float = 2.0) -> TargetResult:
    return TargetResult(
        name=name, description=name, url="http://x", api="hf", price_per_hour=price, token_source="none",
        cold_start=ColdStart(True, 1.5, 3, {"503": 2}, 0.2),
        steps=tuple(StepRecord(x, (), ()) for x in steps), knee=knee(steps, slo), throttle=throttle_summary(steps),
        notes=(),
    )
