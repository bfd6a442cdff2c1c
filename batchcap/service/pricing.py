"""What a token-billed target charges: ``--token-price``, else its ``GET /v1/models`` in the HF router's shape.

The router lists, per model, every provider that serves it and (when known) its price in USD per million
tokens (hub-docs ``inference-providers/hub-api.md``, "List OpenAI-compatible models")::

    {"data": [{"id": "Qwen/Qwen2.5-VL-7B-Instruct", ..., "providers": [
        {"provider": "novita", "status": "live", "pricing": {"input": 0.2, "output": 0.8}, ...},
        {"provider": "fireworks-ai", "status": "live", ...}]}]}          <- no "pricing": price unknown

Which provider served a request is in the answer's ``x-inference-provider`` header, so the price is looked up
per answer. A model id may carry the router's suffix (``:novita`` picks that provider, ``:cheapest`` /
``:fastest`` a policy); the list is keyed by the bare id. Nothing is guessed: a provider without a price is
"unknown" (the run says so once), and a server without the router's list (TGI, vLLM) has no price at all.

Pure parsing here; the one GET goes through ``CaptionClient.get_json`` (``fetch_prices``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from batchcap.errors import APIError
from batchcap.flow.budget import TokenPrice

__all__ = ["ROUTER_POLICIES", "JsonGetter", "PriceList", "fetch_prices", "models_url", "parse_models", "split_model"]

#: Model suffixes that pick a provider by policy rather than by name (protocol.md 9).
ROUTER_POLICIES = ("fastest", "cheapest", "preferred")


def split_model(model: str) -> tuple[str, str | None]:
    """``"org/m:novita"`` -> ``("org/m", "novita")``; ``"org/m"`` -> ``("org/m", None)``."""
    base, sep, suffix = model.rpartition(":")
    if not sep or not base or "/" in suffix:
        return model, None
    return base, suffix


@dataclass(frozen=True, slots=True)
class PriceList:
    """One target's token prices: one for every provider (``--token-price``), or per provider (``/v1/models``).

    ``unpriced`` are providers the list names without a price; ``source`` says where the prices came from.
    """

    source: str
    fixed: TokenPrice | None = None
    by_provider: Mapping[str, TokenPrice] = field(default_factory=dict)
    unpriced: tuple[str, ...] = ()
    pinned: str | None = None  #: the provider the model suffix names (``:novita``), if any

    def price(self, provider: str | None) -> TokenPrice | None:
        """The price of an answer served by ``provider`` (the router's header); None when it is not known."""
        if self.fixed is not None:
            return self.fixed
        if provider is None:
            provider = self.pinned
        if provider is None and len(self.by_provider) == 1 and not self.unpriced:
            provider = next(iter(self.by_provider))  # one provider serves the model: no guess involved
        return None if provider is None else self.by_provider.get(provider)

    def highest(self) -> TokenPrice | None:
        """The dearest price an answer could carry, for a reservation made before the provider is known."""
        if self.fixed is not None:
            return self.fixed
        prices = list(self.by_provider.values())
        if self.pinned is not None:
            pinned = self.by_provider.get(self.pinned)
            prices = [pinned] if pinned is not None else []
        if not prices:
            return None
        return TokenPrice(max(p.input for p in prices), max(p.output for p in prices))

    @property
    def known(self) -> bool:
        """Some answer can be priced."""
        return self.highest() is not None

    def to_dict(self) -> dict[str, Any]:
        """For the run manifest (the cache a later run may fall back on)."""
        return {
            "source": self.source,
            "fixed": None if self.fixed is None else {"input": self.fixed.input, "output": self.fixed.output},
            "by_provider": {name: {"input": p.input, "output": p.output} for name, p in self.by_provider.items()},
            "unpriced": list(self.unpriced),
            "pinned": self.pinned,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> PriceList | None:
        """The inverse of ``to_dict``; None for anything that is not one (an old or foreign manifest)."""
        if not isinstance(data, dict):
            return None
        try:
            fixed = data.get("fixed")
            by = data.get("by_provider") or {}
            return cls(
                source=source,
                fixed=None if fixed is None else TokenPrice(float(fixed["input"]), float(fixed["output"])),
                by_provider={str(k): TokenPrice(float(v["input"]), float(v["output"])) for k, v in by.items()},
                unpriced=tuple(str(x) for x in data.get("unpriced") or ()),
                pinned=data.get("pinned") if isinstance(data.get("pinned"), str) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def describe(self) -> str:
        """One line for the summary and notes."""
        if self.fixed is not None:
            return f"{self.fixed} ({self.source})"
        known = ", ".join(f"{name} {p}" for name, p in sorted(self.by_provider.items())) or "no provider priced"
        unknown = f"; no price listed for {', '.join(self.unpriced)}" if self.unpriced else ""
        return f"{known}{unknown} ({self.source})"


def _price(value: Any) -> TokenPrice | None:
    if not isinstance(value, dict):
        return None
    price_in: Any = value.get("input")
    price_out: Any = value.get("output")
    if not (_dollars(price_in) and _dollars(price_out)):
        return None
    return TokenPrice(float(price_in), float(price_out))


def _dollars(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def parse_models(data: Any, model: str, *, source: str) -> PriceList | None:
    """The prices of ``model`` in a ``/v1/models`` answer (router shape); None when the model is not listed
    with providers (a plain OpenAI-compatible server: no prices there)."""
    base, suffix = split_model(model)
    entries = data.get("data") if isinstance(data, dict) else data
    if isinstance(data, dict) and isinstance(data.get("providers"), list):  # /v1/models/{id}: one entry
        entries = [data]
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("id") not in (model, base):
            continue
        providers = entry.get("providers")
        if not isinstance(providers, list):
            return None
        by: dict[str, TokenPrice] = {}
        unpriced: list[str] = []
        for p in providers:
            if not isinstance(p, dict) or not isinstance(p.get("provider"), str):
                continue
            price = _price(p.get("pricing"))
            if price is None:
                unpriced.append(p["provider"])
            else:
                by[p["provider"]] = price
        pinned = suffix if suffix is not None and suffix not in ROUTER_POLICIES else None
        return PriceList(source=source, by_provider=by, unpriced=tuple(unpriced), pinned=pinned)
    return None


def models_url(chat_url: str) -> str:
    """``https://router.huggingface.co/v1/chat/completions`` -> ``https://router.huggingface.co/v1/models``."""
    parts = urlsplit(chat_url)
    path = parts.path.removesuffix("/chat/completions")
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/") + "/models", "", ""))


class JsonGetter(Protocol):
    """What ``fetch_prices`` needs of a client (``CaptionClient`` implements it)."""

    @property
    def url(self) -> str: ...

    async def get_json(self, url: str) -> Any: ...


async def fetch_prices(client: JsonGetter, model: str) -> tuple[PriceList | None, str | None]:
    """GET the target's ``/v1/models`` once: its price list, or None and why not (a note for the user)."""
    url = models_url(client.url)
    host = urlsplit(url).netloc
    try:
        data = await client.get_json(url)
    except APIError as exc:
        return None, f"could not read prices from {host}/v1/models ({exc.message})"
    prices = parse_models(data, model, source=f"{host}/v1/models")
    if prices is None:
        return None, f"{host}/v1/models lists no providers or prices for {split_model(model)[0]}"
    return prices, None
