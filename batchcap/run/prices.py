"""The run's price step: what each target costs, found once before the first caption is asked for.

    --token-price IN,OUT                  -> every chat target, every provider
    else the target's GET /v1/models      -> per provider (the router's shape; ``service.pricing``)
    else the prices the last manifest of this journal cached for it (the list could not be read)
    --price-per-hour                      -> an Endpoint: its busy time (``run.spend.Meter``)

Each target's prices, and what could not be priced, go into the manifest's ``spend`` section and are said once.
With ``--max-cost`` every target must have a price, or the run stops here, before anything is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from batchcap.config import RunConfig
from batchcap.errors import ConfigError
from batchcap.flow.budget import BudgetSettings
from batchcap.run.spend import Meter, SpendTally
from batchcap.service.pricing import PriceList, fetch_prices

__all__ = ["cached_prices", "hourly_price", "price_targets"]


def hourly_price(cfg: RunConfig) -> float | None:
    """``--price-per-hour DOLLARS`` of a one-target run (with ``--target`` it is ``NAME=DOLLARS`` per target)."""
    prices = cfg.routing.price_per_hour
    if cfg.routing.targets or not prices:
        return None
    if len(prices) > 1:
        raise ConfigError(f"--price-per-hour {' '.join(prices)}: with one target give one price in dollars, e.g. "
                          "--price-per-hour 0.60 (NAME=DOLLARS is for several --target NAME=SPEC)")
    text = prices[0].rpartition("=")[2]
    try:
        value = float(text.removeprefix("$"))
    except ValueError:
        raise ConfigError(f"--price-per-hour: expected dollars per hour, e.g. 0.60 (got {text!r})") from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"--price-per-hour must be >= 0 dollars (got {text!r}); 0 means free")
    return value


def cached_prices(manifest: Path) -> dict[str, Any]:
    """The ``spend.prices`` the journal's last manifest recorded, per target (empty when there is none)."""
    try:
        doc = orjson.loads(manifest.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    spend = doc.get("spend") if isinstance(doc, dict) else None
    prices = spend.get("prices") if isinstance(spend, dict) else None
    return prices if isinstance(prices, dict) else {}


async def price_targets(
    lanes: Sequence[tuple[str, Any, Meter | None, str | None]], *, settings: BudgetSettings, spend: SpendTally,
    cached: dict[str, Any], note: Callable[[str], None] = lambda text: None,
) -> None:
    """Give each lane's meter its prices. ``lanes``: ``(label, client, meter, model)``, the model for chat
    targets only (their client is a ``CaptionClient``: the one that can ask ``/v1/models``).

    Raises ``ConfigError`` under ``--max-cost`` when a target has no price (nothing has been sent then).
    """
    unpriced: list[str] = []
    for label, client, meter, model in lanes:
        if meter is None:
            if settings.max_cost is not None:
                unpriced.append(f"{label} (no usage to count and no --price-per-hour)")
            continue
        if meter.per_hour is not None:
            spend.prices[meter.target] = {"source": "--price-per-hour", "per_hour": meter.per_hour}
            note(f"price: {meter.target}: ${meter.per_hour:g} per hour, counted over its busy time")
            continue
        if model is None:
            if settings.max_cost is not None:
                unpriced.append(f"{meter.target} (no usage to count and no --price-per-hour)")
            continue
        prices = await _token_prices(client, model, meter.target, settings, cached, note)
        if prices is not None:
            meter.set_prices(prices)
            spend.prices[meter.target] = prices.to_dict()
        if prices is None or not prices.known:
            why = (f"no price is known for {meter.target}" + (f" ({prices.describe()})" if prices else "")
                   + ": its records carry usage but no cost_usd; pass --token-price IN,OUT")
            spend.note(why)
            note(why)
            unpriced.append(meter.target)
            continue
        note(f"price: {meter.target}: {prices.describe()}")
    if settings.max_cost is not None and unpriced:
        raise ConfigError(f"--max-cost {settings.max_cost:g} cannot be kept: no price is known for "
                          f"{', '.join(unpriced)}; pass --token-price IN,OUT (chat targets) or --price-per-hour "
                          "(an Endpoint)")


async def _token_prices(client: Any, model: str, target: str, settings: BudgetSettings, cached: dict[str, Any],
                        note: Callable[[str], None]) -> PriceList | None:
    if settings.token_price is not None:
        return PriceList(source="--token-price", fixed=settings.token_price)
    async with client:
        prices, why = await fetch_prices(client, model)
    if prices is not None and prices.known:
        return prices
    old = PriceList.from_dict(cached.get(target), source="the prices cached in this journal's last manifest")
    if old is not None and old.known:
        note(f"{why or 'no price listed'}; using {old.source}")
        return old
    if why:
        note(why)
    return prices
