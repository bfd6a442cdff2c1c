"""The words of ``batchcap bench``: the verdict paragraph and the small formatters the report shares.

Pure functions over the summaries in ``stats``; nothing here measures or computes a figure, it only says one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from batchcap.bench.stats import ERROR_LABELS, StepStats, TargetResult

__all__ = ["PRO_GPU_SECONDS_A_DAY", "cheapest", "describe_errors", "drop_empty", "format_duration", "space_caveat",
           "still_climbing", "verdict"]


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, ``3.2 days``: the unit a person would say."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _money(dollars: float) -> str:
    if dollars == 0:
        return "$0"
    if dollars < 0.01:
        return f"${dollars:.4f}"
    return f"${dollars:,.2f}"


def _level(step: StepStats) -> str:
    return f"concurrency {step.level:g}" if step.mode == "closed" else f"{step.level:g} arrivals/s"


def _price(price: float | None) -> str:
    if price is None:
        return "no price given"
    return "free" if price == 0 else f"${price:.2f}/h"


#: ZeroGPU's daily quota on PRO (issue 20: "~25 min on PRO"), for the caveat on a Space that did not run out.
PRO_GPU_SECONDS_A_DAY = 25 * 60


def verdict(targets: Sequence[TargetResult], slo_s: float, *, images: int = 10_000) -> str:
    """One paragraph: which target, at which concurrency, what it costs, and what the others gave; and when a
    Space's GPU quota makes it unfit for ``images`` images."""
    core = _verdict(targets, slo_s, images=images)
    caveats = [line for t in targets if (line := space_caveat(t, images)) is not None]
    return " ".join([core, *caveats])


def space_caveat(t: TargetResult, images: int) -> str | None:
    """The sentence on a Space's quota: the one it ran out of, else what a PRO day would cover at its pace."""
    from batchcap.service.space.words import format_wait

    q = t.space_quota
    if q is not None:
        back = "" if q.retry_after_s is None else f", back in {format_wait(q.retry_after_s)}"
        if q.captions_before == 0:
            return (f"{t.name}'s GPU quota was already spent{back}: a Space is for small sets, and this one can "
                    f"caption none of {images:,} images now.")
        periods = math.ceil(images / q.captions_before)
        return (f"{t.name} ran out of its GPU quota after {q.captions_before:,} captions{back}: {images:,} images "
                f"would need about {periods:,} such quotas (ZeroGPU's come back daily), so it is unfit for this "
                "folder size: a Space is for small sets.")
    if not t.description.startswith("space:"):
        return None
    paced = [s.stats for s in t.steps if s.stats.latency is not None and s.stats.ok]
    if not paced:
        return None
    seconds = min(s.latency.p50 for s in paced if s.latency is not None)
    per_day = PRO_GPU_SECONDS_A_DAY / max(seconds, 1e-3)
    if per_day >= images:
        return None
    return (f"{t.name} is a Space: if it runs on ZeroGPU, a PRO quota of {PRO_GPU_SECONDS_A_DAY // 60} GPU minutes a "
            f"day covers about {per_day:,.0f} images at its median {seconds:.2f} s each, fewer than {images:,}: "
            "a Space is for small sets.")


def _verdict(targets: Sequence[TargetResult], slo_s: float, *, images: int = 10_000) -> str:
    """The paragraph without the Space caveats."""
    ranked = sorted((t for t in targets if t.knee is not None), key=lambda t: -_knee(t).images_per_s)
    if not ranked:
        lowest = [
            (s.stats.latency.p95, t.name, s.stats)
            for t in targets
            for s in t.steps
            if s.stats.latency is not None
        ]
        if not lowest:
            why = [
                f"{t.name}: {describe_errors(t.cold_start.errors) or 'no answer'}"
                + (f", last error: {t.cold_start.last_error}" if t.cold_start.last_error else "")
                for t in targets
                if t.cold_start is not None and not t.cold_start.ok
            ]
            return "No target returned a single caption" + (f" ({'; '.join(why)})." if why else ".")
        p95, name, step = min(lowest, key=lambda item: item[0])
        return (
            f"No target kept its p95 latency within the {slo_s:g} s SLO at any step; the lowest p95 was "
            f"{p95:.2f} s ({name} at {_level(step)}). Raise --slo or try lower concurrency."
        )
    best = ranked[0]
    step = _knee(best)
    assert step.latency is not None
    parts = [
        (f"**{best.name}** is the faster choice: {step.images_per_s:.1f} images/s at {_level(step)} "
        f"(p95 {step.latency.p95:.2f} s, within the {slo_s:g} s SLO)")
    ]
    if len(ranked) > 1:
        other = ranked[1]
        ratio = step.images_per_s / _knee(other).images_per_s if _knee(other).images_per_s else math.inf
        parts[0] += (
            f", {ratio:.1f}x {other.name}'s best of {_knee(other).images_per_s:.1f} images/s "
            f"at {_level(_knee(other))}"
        )
    parts[0] += "."
    for t in (best, *ranked[1:2]):
        s = _knee(t)
        took = format_duration(images / s.images_per_s)
        if t.price_per_hour is None and t.pricing is not None and s.cost_per_1000 is not None:
            cost = s.cost_per_1000 * images / 1000.0
            parts.append(
                f"Billed by the token, {t.name} costs {_money(s.cost_per_1000)} per 1,000 images (its answers' "
                f"measured usage at their provider's price): {images:,} images take {took} for {_money(cost)}."
            )
        elif t.price_per_hour:
            cost = t.price_per_hour * images / s.images_per_s / 3600.0
            assert s.cost_per_1000 is not None
            assert s.images_per_dollar is not None
            parts.append(
                f"At {_price(t.price_per_hour)}, {t.name} costs {_money(s.cost_per_1000)} per 1,000 images "
                f"({s.images_per_dollar:,.0f} images per dollar): {images:,} images take {took} for {_money(cost)}."
            )
        elif t.price_per_hour == 0:
            parts.append(f"{t.name} is free and takes {took} for {images:,} images.")
        else:
            parts.append(f"{t.name} takes {took} for {images:,} images (no --price-per-hour or --token-price "
                         "given).")
    if (cheap := cheapest(ranked)) is not None:
        parts.append(_cheapest_sentence(cheap, ranked, slo_s))
    if (climbing := still_climbing(best)) is not None:
        parts.append(
            f"{best.name}'s throughput was still rising at {_level(climbing)}, the highest tried: "
            "sweep higher to find its limit."
        )
    for t in targets:
        th = t.throttle
        if th.throttled and th.first_throttled_level is not None:
            sustained = (
                f"; it sustained {th.images_per_hour_unthrottled:,.0f} images/hour before being rate limited"
                if th.images_per_hour_unthrottled
                else ""
            )
            unit = "concurrency" if t.steps and t.steps[0].stats.mode == "closed" else "arrival rate"
            parts.append(f"{t.name} answered 429 (rate limited) from {unit} {th.first_throttled_level:g} on{sustained}.")
    colds = [f"{t.name} {t.cold_start.seconds:.1f} s" for t in targets if t.cold_start and t.cold_start.seconds is not None]
    if colds:
        parts.append("Time to first caption from idle: " + ", ".join(colds) + ".")
    for t in targets:
        if t.knee is None and t.steps:
            parts.append(f"{t.name} never kept p95 within the SLO.")
    return " ".join(parts)


def cheapest(targets: Sequence[TargetResult]) -> TargetResult | None:
    """The target with the lowest cost per 1,000 images at its knee (within the SLO); None when fewer than two
    such targets have a known cost (there is nothing to compare)."""
    priced = [t for t in targets if t.knee is not None and _knee_cost(t) is not None]
    if len(priced) < 2:
        return None
    return min(priced, key=lambda t: (_knee_cost(t), -_knee(t).images_per_s))


def _knee_cost(t: TargetResult) -> float | None:
    """Dollars per 1,000 images at the knee: 0 for a free target, None when no price is known."""
    if t.price_per_hour == 0:
        return 0.0
    return _knee(t).cost_per_1000 if t.knee is not None else None


def _cheapest_sentence(cheap: TargetResult, ranked: Sequence[TargetResult], slo_s: float) -> str:
    others = [f"{t.name} {_money(c)}" for t in ranked if t is not cheap and (c := _knee_cost(t)) is not None]
    unknown = [t.name for t in ranked if _knee_cost(t) is None]
    cost = _knee_cost(cheap)
    assert cost is not None
    line = (f"The cheapest within the {slo_s:g} s SLO is **{cheap.name}** at {_money(cost)} per 1,000 images"
            + (f" ({', '.join(others)})" if others else "") + ".")
    if unknown:
        line += f" No price known for {', '.join(unknown)}."
    return line


def still_climbing(t: TargetResult, *, gain: float = 1.25) -> StepStats | None:
    """The knee when it is the top of the sweep and still gained ``gain``x over the step below, else None."""
    k = t.knee
    steps = sorted((r.stats for r in t.steps if k is not None and r.stats.mode == k.mode), key=lambda s: s.level)
    if k is None or len(steps) < 2 or steps[-1].level != k.level:
        return None
    below = steps[-2].images_per_s
    return k if below > 0 and k.images_per_s >= gain * below else None


def _knee(t: TargetResult) -> StepStats:
    assert t.knee is not None
    return t.knee


def drop_empty(mapping: Mapping[str, int]) -> dict[str, int]:
    """Only the non-zero counts, for compact human output."""
    return {k: v for k, v in mapping.items() if v}


def describe_errors(counts: Mapping[str, int]) -> str:
    """``{"429": 3, "503": 1}`` -> ``"3x 429, 1x 503 loading"``; empty for no errors."""
    labels: dict[str, str] = {str(k): v for k, v in ERROR_LABELS.items()}
    return ", ".join(f"{n}x {labels.get(k, k)}" for k, n in counts.items() if n)
