"""Wall time and cost of captioning N images, from the limits a run would use: pure arithmetic.

A run is bounded by the slower of two ceilings:

* the rate limit: the bucket starts full, so ``burst`` requests go at once, then one per ``1 / rate`` s;
* concurrency (Little's law): ``concurrency`` requests in flight, each taking ``latency`` s, so at most
  ``concurrency / latency`` per second.

Without a probe the latency is unknown: then only a rate-limited run has an estimate (the latency ceiling
is assumed not to bind, and the output says so). A probe gives the latency, and also tells whether the
service throttled (HTTP 429): then the service's own limit is lower than ours and the estimate is a floor.
Cost is wall time x ``price_per_hour`` (Endpoints bill per running hour); per-request prices are not known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Estimate", "estimate"]

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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
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
    cost = None
    if price_per_hour is not None and wall is not None:
        cost = round(price_per_hour * wall / 3600.0, 6)
    elif price_per_hour is None:
        notes.append("no --price-per-hour: cost not estimated")
    ips = requests / wall if wall else None
    return Estimate(
        target=target, requests=requests, concurrency=concurrency, rate=rate, burst=burst,
        latency_s=latency_s, latency_source="probe" if latency_s is not None else "unknown",
        wall_s=None if wall is None else round(wall, 3), bound=bound,
        images_per_s=None if ips is None else round(ips, 3), price_per_hour=price_per_hour, cost=cost,
        notes=tuple(notes),
    )
