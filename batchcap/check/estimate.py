"""Wall time and cost of captioning N images, from the limits a run would use: pure arithmetic.

A run is bounded by the slower of two ceilings:

* the rate limit: the bucket starts full, so ``burst`` requests go at once, then one per ``1 / rate`` s;
* concurrency (Little's law): ``concurrency`` requests in flight, each taking ``latency`` s, so at most
  ``concurrency / latency`` per second.

Without a probe the latency is unknown: then only a rate-limited run has an estimate (the latency ceiling
is assumed not to bind, and the output says so). A probe gives the latency, and also tells whether the
service throttled (HTTP 429): then the service's own limit is lower than ours and the estimate is a floor.
Cost is wall time x ``price_per_hour`` (Endpoints bill per running hour). A token-billed target's cost comes
from what a probe's answers actually billed (``cost_estimate``: their usage at the provider's price, scaled to
the folder by the pixels each image is sent with), with a range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CostEstimate", "Estimate", "cost_estimate", "estimate"]

#: Per-run overhead in seconds (start-up, index, session, first batch): measured ~0.1-0.3 s on the dev box.
RUN_OVERHEAD_S = 0.2


@dataclass(frozen=True, slots=True)
class Estimate:
    """The forecast for one target; ``wall_s`` None when nothing bounds it that we know."""

    target: str
    requests: int
    concurrency: int
    rate: float | None
    burst: int
    latency_s: float | None
    latency_source: str  #: "probe" or "unknown"
    wall_s: float | None
    bound: str  #: "rate", "concurrency", "none" (nothing to send) or "unknown"
    images_per_s: float | None
    price_per_hour: float | None
    cost: float | None
    notes: tuple[str, ...] = ()
    cost_low: float | None = None  #: the 95% range of ``cost`` (token-billed targets, from the probe)
    cost_high: float | None = None
    cost_source: str | None = None  #: "price_per_hour" (wall time x price) or "probe usage" (tokens billed)
    tokens: CostEstimate | None = None  #: the token-billed estimate in full

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        out["tokens"] = None if self.tokens is None else self.tokens.to_dict()
        return out


def estimate(
    requests: int,
    *,
    target: str,
    concurrency: int,
    rate: float | None,
    burst: int,
    latency_s: float | None = None,
    throttled: bool = False,
    price_per_hour: float | None = None,
    overhead_s: float = RUN_OVERHEAD_S,
    tokens: CostEstimate | None = None,
) -> Estimate:
    """The wall time ``requests`` would take at these limits (see the module docstring)."""
    notes: list[str] = []
    t_rate = max(0, requests - burst) / rate if rate else None
    t_conc = requests * latency_s / concurrency if latency_s is not None else None
    if requests == 0:
        wall: float | None = 0.0
        bound = "none"
    elif t_rate is None and t_conc is None:
        wall, bound = None, "unknown"
        notes.append("no rate limit and no latency known: pass --probe N to measure the latency")
    else:
        if t_conc is None:
            notes.append("latency unknown (no --probe): assumed not to bind, so this is a lower bound")
        if t_rate is not None and (t_conc is None or t_rate >= t_conc):
            wall, bound = t_rate, "rate"
        else:
            wall, bound = t_conc, "concurrency"
        wall = (wall or 0.0) + overhead_s + (latency_s or 0.0)  # the last request still has to come back
    if throttled:
        notes.append("the service answered 429 during the probe: its limit is below --rate, so expect longer")
    cost = low = high = None
    source = None
    if price_per_hour is not None and wall is not None:
        cost = round(price_per_hour * wall / 3600.0, 6)
        source = "price_per_hour"
    elif tokens is not None:
        cost, low, high = round(tokens.total, 6), round(tokens.low, 6), round(tokens.high, 6)
        source = "probe usage"
        notes.extend(tokens.notes)
    elif price_per_hour is None:
        notes.append("no --price-per-hour (an Endpoint) and no priced --probe answers (a chat target): cost not "
                     "estimated")
    ips = requests / wall if wall else None
    return Estimate(
        target=target, requests=requests, concurrency=concurrency, rate=rate, burst=burst,
        latency_s=latency_s, latency_source="probe" if latency_s is not None else "unknown",
        wall_s=None if wall is None else round(wall, 3), bound=bound,
        images_per_s=None if ips is None else round(ips, 3), price_per_hour=price_per_hour, cost=cost,
        notes=tuple(notes), cost_low=low, cost_high=high, cost_source=source, tokens=tokens,
    )


#: Two-sided 95% quantiles of Student's t by degrees of freedom (1..30); beyond, the normal 1.96.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What captioning ``images`` images would cost, from the measured cost of ``sample`` probe answers.

    ``low`` .. ``high`` is a 95% range for the folder's total (sampling error of the probe; prices as listed).
    ``method``: ``"pixels"`` (each answer's cost fitted against the pixels its image is sent with, then summed
    over every image's pixels: a VLM's image tokens grow with them) or ``"mean"`` (the sample's mean per image).
    """

    images: int
    sample: int
    per_image: float
    total: float
    low: float
    high: float
    method: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        for key in ("per_image", "total", "low", "high"):
            out[key] = round(out[key], 9)
        out["per_1000_images"] = round(1000 * self.per_image, 6)
        return out


def cost_estimate(
    images: int,
    costs: Sequence[float],
    *,
    pixels: Sequence[float | None] = (),
    pixels_total: float | None = None,
    pixels_unknown: int = 0,
) -> CostEstimate | None:
    """The folder's cost from the probe's ``costs`` (None without any). ``pixels[i]`` is the sent pixels of the
    image that cost ``costs[i]``; ``pixels_total`` their sum over all ``images`` (``pixels_unknown`` of them have
    no known size and are counted at the sample's mean cost).

    With pixels: the regression estimator of survey sampling, ``N * (mean cost + b * (mean pixels of the folder -
    mean pixels of the sample))`` with ``b`` the least-squares slope, and its variance ``N^2 (1 - n/N) s^2 / n``
    (``s`` the residual deviation) plus the slope's own uncertainty. Without: ``N * mean`` and ``N^2 (1 - n/N)
    s^2 / n``. The range is +/- Student's t at 95%.
    """
    n = len(costs)
    if n == 0:
        return None
    mean_y = math.fsum(costs) / n
    finite = max(0.0, 1.0 - n / images) if images else 0.0
    usable = [(float(x), y) for x, y in zip(pixels, costs, strict=False) if x is not None]
    known = images - pixels_unknown
    notes: list[str] = []
    if pixels_total is not None and len(usable) >= 3 and len(usable) == n and known > 0:
        mean_x = math.fsum(x for x, _ in usable) / n
        sxx = math.fsum((x - mean_x) ** 2 for x, _ in usable)
        if sxx > 0:
            b = math.fsum((x - mean_x) * (y - mean_y) for x, y in usable) / sxx
            a = mean_y - b * mean_x
            resid = math.fsum((y - a - b * x) ** 2 for x, y in usable) / max(1, n - 2)
            folder_x = pixels_total / known
            total = known * (a + b * folder_x) + pixels_unknown * mean_y
            var = known**2 * resid * (finite / n + (folder_x - mean_x) ** 2 / sxx)
            var += pixels_unknown**2 * resid / n
            half = _t95(n - 2) * math.sqrt(var)
            total = max(0.0, total)
            per = total / images if images else 0.0
            return CostEstimate(images, n, per, total, max(0.0, total - half), total + half, "pixels", tuple(notes))
    var_y = math.fsum((y - mean_y) ** 2 for y in costs) / max(1, n - 1)
    total = images * mean_y
    half = _t95(max(1, n - 1)) * images * math.sqrt(var_y * finite / n)
    if n < 3:
        notes.append(f"only {n} priced answer{'s' if n != 1 else ''}: probe more for a tighter range")
    return CostEstimate(images, n, mean_y, total, max(0.0, total - half), total + half, "mean", tuple(notes))
