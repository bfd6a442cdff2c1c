"""The numbers behind ``batchcap bench``: samples in, summaries, costs, the knee and a verdict out.

Pure functions over plain values (no clock, no I/O), so every figure in ``bench.json`` and ``bench.md`` can be
checked by hand. Definitions, so a reader can trust the table:

* **latency** of a request is ``done - scheduled``: in closed loop ``scheduled`` is the moment the request
  started; in open loop it is the Poisson arrival time, so time spent queued behind a slow server counts
  (no coordinated omission). Percentiles use successes only.
* **percentile** is numpy's default (``method="linear"``, Hyndman & Fan type 7): on the sorted values
  ``x[0..n-1]`` the q-th percentile sits at rank ``h = (n - 1) * q / 100`` and is interpolated between
  ``x[floor(h)]`` and ``x[floor(h) + 1]``.
* **images/s** is successes divided by the step's window: from its start until the loop ended (the last
  answer, or the duration cap if workers were resting after 429s then), so idle waiting is not hidden.
* **cost per 1,000 images** is ``price_per_hour / (images_per_s * 3600) * 1000`` for a target billed by the
  hour (an Endpoint): what the hour costs, spread over the images that hour would caption at this rate. For a
  token-billed target (a router provider) it is 1,000 x the mean cost of its successful answers, each its
  measured ``usage`` at the price of the provider that served it. **Images per dollar** is its inverse, x 1,000.
* **knee**: among steps whose p95 stays within the SLO, the lowest level that reaches the best throughput
  within the measurement's noise (5 %, or 1/sqrt(successes) of the best step if larger). Taking the *lowest*
  such level keeps the advice from being "hammer a rate-limited API at 32" when 1 or 2 in flight give the
  same images/s without the 429s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ERROR_KINDS",
    "ERROR_LABELS",
    "BenchResult",
    "ColdStart",
    "ErrorKind",
    "Latency",
    "Mode",
    "Sample",
    "SpaceQuota",
    "StepRecord",
    "StepStats",
    "StopReason",
    "TargetResult",
    "ThrottleSummary",
    "WarmupStats",
    "cost_per_1000",
    "images_per_dollar",
    "knee",
    "percentile",
    "summarize_latency",
    "summarize_step",
    "throttle_summary",
    "token_cost_per_1000",
]

ErrorKind = Literal["429", "503", "5xx", "timeout", "other"]
#: Every error bucket, in table order. ``timeout`` also holds resets and refused connections (no HTTP answer).
ERROR_KINDS: tuple[ErrorKind, ...] = ("429", "503", "5xx", "timeout", "other")
ERROR_LABELS: dict[ErrorKind, str] = {
    "429": "429",
    "503": "503 loading",
    "5xx": "5xx",
    "timeout": "timeout/transport",
    "other": "other",
}
Mode = Literal["closed", "open"]
StopReason = Literal["count", "duration", "deadline"]


# ---------------------------------------------------------------------------------------------------------------
# Records.


@dataclass(frozen=True, slots=True)
class Sample:
    """One request of a step. Times are seconds since the step started."""

    index: int
    scheduled: float  #: when the request was due (open loop: its arrival; closed loop: == sent)
    sent: float  #: when it actually left (later than ``scheduled`` only if the in-flight cap was full)
    done: float  #: when its answer (or error) arrived
    ok: bool
    kind: ErrorKind | None = None
    status: int | None = None
    bytes_sent: int = 0
    cost_usd: float | None = None  #: token-billed targets: what this answer cost

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in seconds (numpy ``linear`` method) over ``count`` successes."""

    count: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class WarmupStats:
    """The warm-up requests of a step: sent before the measurement and kept out of it."""

    requests: int
    ok: int
    errors: dict[str, int]
    latency: Latency | None


@dataclass(frozen=True, slots=True)
class StepStats:
    """One sweep step (a concurrency in closed loop, an arrival rate in open loop), warm-up excluded."""

    mode: Mode
    level: float  #: concurrency (closed loop) or offered arrivals per second (open loop)
    requests: int  #: measured requests that got an answer or an error
    ok: int
    errors: dict[str, int]  #: by :data:`ERROR_KINDS`
    window_s: float
    images_per_s: float  #: successes per second: the number that matters
    sent_per_s: float
    latency: Latency | None  #: successes only; None when nothing succeeded
    bytes_sent: int
    cost_per_1000: float | None  #: dollars; None without a price or without successes
    images_per_dollar: float | None  #: None without a price, for a free target, or without successes
    first_429_s: float | None  #: when the first 429 answer came, seconds into the step
    images_per_hour_before_429: float | None  #: success rate before that first 429 (windows >= 1 s only)
    unsent: int  #: open loop: arrivals never sent because the step hit its duration or the deadline
    abandoned: int  #: requests still in flight when the step was cut off
    max_send_lag_s: float  #: open loop: worst delay between an arrival and its send (in-flight cap full)
    stopped_by: StopReason
    warmup: WarmupStats

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step's summary with the raw samples it came from."""

    stats: StepStats
    samples: tuple[Sample, ...]
    warmup_samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Time from the first request of the bench to the first caption, probing at a fixed pace."""

    ok: bool
    seconds: float | None  #: None when no caption came within the limit
    attempts: int
    errors: dict[str, int]
    first_latency_s: float | None  #: latency of the successful probe itself
    last_error: str | None = None  #: the last failure's message, e.g. why a target never answered


@dataclass(frozen=True, slots=True)
class ThrottleSummary:
    """How a rate-limited service (the free API) behaved across the sweep."""

    throttled: bool  #: any 429 in any measured step
    first_throttled_level: float | None  #: the lowest level that drew a 429
    images_per_hour_unthrottled: float | None  #: best rate among steps without any 429
    images_per_hour_throttled: float | None  #: best success rate among steps with 429s (the ceiling)


@dataclass(frozen=True, slots=True)
class SpaceQuota:
    """A Space's GPU quota as the bench met it: after how many captions it ran out, and what the Space said."""

    captions_before: int  #: captions the target gave (warm-up and cold start included) before the first refusal
    retry_after_s: float | None  #: when the Space said the quota comes back
    message: str


@dataclass(frozen=True, slots=True)
class TargetResult:
    """Everything measured for one target. ``description`` and ``url`` hold no secret."""

    name: str
    description: str
    url: str
    api: str
    price_per_hour: float | None
    token_source: str
    cold_start: ColdStart | None
    steps: tuple[StepRecord, ...]
    knee: StepStats | None
    throttle: ThrottleSummary
    notes: tuple[str, ...]
    space_quota: SpaceQuota | None = None  #: a Space whose GPU quota ran out during the bench
    pricing: str | None = None  #: a token-billed target's prices and their source (None: by the hour, or none)


@dataclass(frozen=True, slots=True)
class BenchResult:
    """A whole bench: what ``bench.json`` holds (plus the samples, which the report flattens)."""

    targets: tuple[TargetResult, ...]
    slo_s: float
    verdict: str
    config: dict[str, Any]
    versions: dict[str, str | None]
    machine: dict[str, Any]
    images: dict[str, Any]
    started_at: str
    elapsed_s: float
    stopped: str | None


# ---------------------------------------------------------------------------------------------------------------
# Maths.


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, as ``numpy.percentile(values, q)`` computes it."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100] (got {q})")
    ordered = sorted(values)
    h = (len(ordered) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def summarize_latency(values: Sequence[float]) -> Latency | None:
    """Percentiles of ``values`` (seconds); None for no values, so "no data" never reads as 0 s."""
    if not values:
        return None
    return Latency(
        count=len(values),
        min=min(values),
        mean=math.fsum(values) / len(values),
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=max(values),
    )


def cost_per_1000(price_per_hour: float | None, images_per_s: float) -> float | None:
    """Dollars per 1,000 images at this rate; 0 for a free target; None without a price or a rate."""
    if price_per_hour is None or images_per_s <= 0:
        return None
    if price_per_hour == 0:
        return 0.0
    return price_per_hour / (images_per_s * 3600.0) * 1000.0


def token_cost_per_1000(costs: Sequence[float | None]) -> float | None:
    """Dollars per 1,000 images of a token-billed target: 1,000 x the mean measured cost of its answers (None
    when none was priced). Answers without a price are left out, not counted as free."""
    priced = [c for c in costs if c is not None]
    return 1000.0 * math.fsum(priced) / len(priced) if priced else None


def images_per_dollar(price_per_hour: float | None, images_per_s: float) -> float | None:
    """Images one dollar buys at this rate; None without a price, for a free target, or without a rate."""
    if not price_per_hour or images_per_s <= 0:
        return None
    return images_per_s * 3600.0 / price_per_hour


def _error_counts(samples: Iterable[Sample]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
    for s in samples:
        if not s.ok:
            counts[s.kind or "other"] += 1
    return counts


def summarize_step(
    samples: Sequence[Sample],
    *,
    mode: Mode,
    level: float,
    price_per_hour: float | None = None,
    window_s: float | None = None,
    unsent: int = 0,
    abandoned: int = 0,
    stopped_by: StopReason = "count",
    warmup_samples: Sequence[Sample] = (),
    min_throttle_window_s: float = 1.0,
    token_billed: bool = False,
) -> StepStats:
    """Summarize a step's samples. ``window_s`` is the loop's elapsed time; it defaults to the last answer."""
    ok = [s for s in samples if s.ok]
    window = window_s if window_s is not None else max((s.done for s in samples), default=0.0)
    ips = len(ok) / window if window > 0 else 0.0
    throttled = [s.done for s in samples if s.kind == "429"]
    first_429 = min(throttled) if throttled else None
    before: float | None = None
    if first_429 is not None and first_429 >= min_throttle_window_s:
        n_before = sum(1 for s in ok if s.done <= first_429)
        before = n_before / first_429 * 3600.0 if n_before else None
    warm_ok = [s.latency for s in warmup_samples if s.ok]
    per_1000, per_dollar = cost_per_1000(price_per_hour, ips), images_per_dollar(price_per_hour, ips)
    if token_billed:
        per_1000 = token_cost_per_1000([s.cost_usd for s in ok])
        per_dollar = 1000.0 / per_1000 if per_1000 else None
    return StepStats(
        mode=mode,
        level=level,
        requests=len(samples),
        ok=len(ok),
        errors=_error_counts(samples),
        window_s=window,
        images_per_s=ips,
        sent_per_s=len(samples) / window if window > 0 else 0.0,
        latency=summarize_latency([s.latency for s in ok]),
        bytes_sent=sum(s.bytes_sent for s in samples),
        cost_per_1000=per_1000,
        images_per_dollar=per_dollar,
        first_429_s=first_429,
        images_per_hour_before_429=before,
        unsent=unsent,
        abandoned=abandoned,
        max_send_lag_s=max((s.sent - s.scheduled for s in samples), default=0.0),
        stopped_by=stopped_by,
        warmup=WarmupStats(
            requests=len(warmup_samples),
            ok=len(warm_ok),
            errors=_error_counts(warmup_samples),
            latency=summarize_latency(warm_ok),
        ),
    )


def knee(steps: Iterable[StepStats], slo_s: float, *, tolerance: float = 0.05) -> StepStats | None:
    """The lowest level reaching the best images/s whose p95 is within ``slo_s``; None if no step qualifies.

    "Reaching" allows for measurement noise: within ``max(tolerance, 1/sqrt(successes of the best step))`` of
    the best, so ten lucky requests at concurrency 16 cannot beat concurrency 1 on a rate-limited API.
    """
    within = [s for s in steps if s.ok > 0 and s.latency is not None and s.latency.p95 <= slo_s]
    if not within:
        return None
    best = max(within, key=lambda s: s.images_per_s)
    margin = max(tolerance, 1.0 / math.sqrt(best.ok))
    good = [s for s in within if s.images_per_s >= best.images_per_s * (1.0 - margin)]
    return min(good, key=lambda s: (s.level, -s.images_per_s))


def throttle_summary(steps: Iterable[StepStats]) -> ThrottleSummary:
    """Where 429s began and how many images/hour the target gave before and after."""
    steps = list(steps)
    hit = [s for s in steps if s.errors.get("429", 0) > 0]
    clean = [s for s in steps if s.errors.get("429", 0) == 0 and s.ok > 0]
    return ThrottleSummary(
        throttled=bool(hit),
        first_throttled_level=min((s.level for s in hit), default=None),
        images_per_hour_unthrottled=max((s.images_per_s * 3600.0 for s in clean), default=None),
        images_per_hour_throttled=max((s.images_per_s * 3600.0 for s in hit), default=None),
    )
