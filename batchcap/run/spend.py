"""What each image cost, and what the run spent by task, target and provider.

A ``Meter`` prices one target's attempts and says what the next one may cost at most (for ``flow.budget``):

* **tokens** (a chat target): each answer's ``usage`` times the price of the provider that served it
  (``service.pricing.PriceList``: ``--token-price``, else the target's ``/v1/models``). The worst case of the
  next attempt is the largest prompt seen so far (x ``PROMPT_MARGIN``) plus ``max_tokens`` of output, at the
  dearest provider's price. Before the first answer the prompt's size is unknown: that attempt goes alone.
* **time** (an Endpoint with ``--price-per-hour``): billed while running, so each attempt is charged the time
  since the target's previous charge (the busy span, cut into records: their sum is the span's cost). The worst
  case of the next attempt is the time already accrued plus one request at the slowest recent latency.

A ``Bill`` sums one image's attempts (quality retries are paid twice), and becomes the record's ``usage``,
``provider`` and ``cost_usd``. ``SpendTally`` sums the records the writer writes, for the summary and the
manifest's ``spend`` section.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from batchcap.flow.budget import TokenPrice
from batchcap.models import Record, Usage
from batchcap.service.pricing import PriceList
from batchcap.types import Clock

__all__ = ["PROMPT_MARGIN", "Bill", "Billing", "Meter", "SpendTally", "money"]

#: The next prompt is reserved at the largest seen so far times this: images differ in size (and so in image
#: tokens) within the bounds --max-side sets.
PROMPT_MARGIN = 1.25
#: An Endpoint's next request is reserved at the slowest of this many recent latencies (x 1.5).
_RECENT = 32

Billing = Literal["tokens", "time", "unknown"]


def money(dollars: float) -> str:
    """``$4.97``; four decimals below a dime, where two would read as $0.00."""
    if dollars >= 0.1 or dollars == 0:
        return f"${dollars:,.2f}"
    return f"${dollars:.4f}"


class Bill:
    """One image's attempts as billed: summed usage and cost, the provider of the last answer."""

    __slots__ = ("cost", "images_reserved", "priced", "provider", "released_done", "unpriced", "usage")

    def __init__(self) -> None:
        self.cost = 0.0
        self.images_reserved = 0  #: held under --max-images by the image's first attempt
        self.released_done = False  #: a budget stop released a done record for it (``attempt``)
        self.usage: Usage | None = None
        self.provider: str | None = None
        self.priced = False  #: some attempt had a known cost (the record carries ``cost_usd``)
        self.unpriced = False  #: some billed answer had no known price (or no usage)

    @property
    def cost_usd(self) -> float | None:
        """For the record: None when nothing was priced (no cost is better than a guessed one)."""
        return round(self.cost, 12) if self.priced else None


class Meter:
    """How one target's attempts are priced and reserved. See the module docstring."""

    __slots__ = ("_clock", "_last", "_latencies", "_noted", "_prompt_max", "billing", "max_tokens", "notes",
                 "per_hour", "prices", "target")

    def __init__(
        self, target: str, *, prices: PriceList | None = None, per_hour: float | None = None, max_tokens: int = 64,
        clock: Clock = time.monotonic,
    ) -> None:
        self.target = target
        self.prices = prices
        self.per_hour = per_hour
        self.max_tokens = max_tokens
        self.billing: Billing = "unknown"
        self.set_prices(prices)
        self._clock = clock
        self._prompt_max: int | None = None  #: largest prompt_tokens an answer reported
        self._latencies: deque[float] = deque(maxlen=_RECENT)
        self._last: float | None = None  #: time billing: the busy span is charged up to here
        self._noted: set[str] = set()
        self.notes: list[str] = []  #: what could not be priced, each said once

    def set_prices(self, prices: PriceList | None) -> None:
        """The token prices found for the target (``run.prices``); an hourly price wins."""
        self.prices = prices
        self.billing = "time" if self.per_hour is not None else "tokens" if prices is not None and prices.known \
            else "unknown"

    def reserve(self) -> tuple[float, bool]:
        """The next attempt's worst case in dollars, and whether it must go alone (its size is not known yet)."""
        if self.billing == "time":
            assert self.per_hour is not None
            if not self._latencies:
                return 0.0, True
            accrued = 0.0 if self._last is None else max(0.0, self._clock() - self._last)
            return self.per_hour / 3600.0 * (accrued + 1.5 * max(self._latencies)), False
        if self.billing == "tokens":
            assert self.prices is not None
            price = self.prices.highest()
            assert price is not None
            if self._prompt_max is None:
                return price.cost(0, self.max_tokens), True
            return price.cost(math.ceil(self._prompt_max * PROMPT_MARGIN), self.max_tokens), False
        return 0.0, False

    def begin(self) -> None:
        """An attempt starts: an Endpoint's busy span starts with its first one."""
        if self._last is None and self.billing == "time":
            self._last = self._clock()

    def charge(self, bill: Bill, reply: Any = None) -> float:
        """Add one attempt to ``bill`` (``reply`` None: it failed) and return its cost in dollars (0 if unknown)."""
        usage: Usage | None = getattr(reply, "usage", None)
        provider: str | None = getattr(reply, "provider", None)
        if usage is not None:
            bill.usage = usage if bill.usage is None else bill.usage + usage
            self._prompt_max = max(self._prompt_max or 0, usage.prompt_tokens)
        if provider is not None:
            bill.provider = provider
        if self.billing == "time":
            assert self.per_hour is not None
            now = self._clock()
            if reply is not None:
                self._latencies.append(float(reply.latency_s))
            cost = 0.0 if self._last is None else self.per_hour / 3600.0 * max(0.0, now - self._last)
            self._last = now
            bill.cost += cost
            bill.priced = True
            return cost
        if reply is None or self.prices is None:
            return 0.0
        if usage is None:
            bill.unpriced = True
            self._note("no-usage", f"{self.target}: an answer carried no usage: its cost is not known")
            return 0.0
        price: TokenPrice | None = self.prices.price(provider)
        if price is None:
            bill.unpriced = True
            self._note(f"provider:{provider}", f"{self.target}: no price is known for provider {provider or '(not named)'} "
                                              f"({self.prices.describe()}); its answers carry no cost_usd: pass "
                                              "--token-price IN,OUT")
            return 0.0
        cost = price.cost(usage.prompt_tokens, usage.completion_tokens)
        bill.cost += cost
        bill.priced = True
        return cost

    def _note(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    def __repr__(self) -> str:
        return f"<Meter {self.target} {self.billing} prompt_max={self._prompt_max}>"


@dataclass(slots=True)
class _Line:
    usd: float = 0.0
    images: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, rec: Record) -> None:
        if rec.cost_usd is not None:
            self.usd += rec.cost_usd
            self.images += 1
        if rec.usage is not None:
            self.prompt_tokens += rec.usage.prompt_tokens
            self.completion_tokens += rec.usage.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"usd": round(self.usd, 9), "images": self.images, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "per_1000_images_usd": round(1000 * self.usd / self.images, 6) if self.images else None}


@dataclass(slots=True)
class SpendTally:
    """What the records written by this run cost, with the journal's earlier spend beside it."""

    earlier_usd: float = 0.0  #: spend the journal held when the run started (earlier runs)
    earlier_images: int = 0  #: records with a cost it held
    total: _Line = field(default_factory=_Line)
    by_task: dict[str, _Line] = field(default_factory=dict)
    by_target: dict[str, _Line] = field(default_factory=dict)
    by_provider: dict[str, _Line] = field(default_factory=dict)
    prices: dict[str, Any] = field(default_factory=dict)  #: per target: the price list in force, its source
    notes: list[str] = field(default_factory=list)  #: targets or providers without a price, each once
    announced: int = 0  #: how many of ``notes`` were said when the run started (the rest: found during it)
    max_cost: float | None = None
    max_images: int | None = None

    def add(self, rec: Record) -> None:
        """One written record (the writer calls this only for records with usage or a cost)."""
        self.total.add(rec)
        task = getattr(rec, "task", None) or "caption"
        self.by_task.setdefault(task, _Line()).add(rec)
        self.by_target.setdefault(rec.target, _Line()).add(rec)
        if rec.provider is not None:
            self.by_provider.setdefault(rec.provider, _Line()).add(rec)

    @property
    def usd(self) -> float:
        """This run's spend."""
        return self.total.usd

    @property
    def job_usd(self) -> float:
        """The whole job's: earlier runs' and this one's."""
        return self.earlier_usd + self.total.usd

    @property
    def any(self) -> bool:
        return bool(self.total.images or self.total.prompt_tokens or self.earlier_usd or self.notes)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``spend`` section (USD)."""
        return {
            "currency": "USD",
            "run": self.total.to_dict(),
            "earlier_usd": round(self.earlier_usd, 9),
            "earlier_images": self.earlier_images,
            "job_usd": round(self.job_usd, 9),
            "by_task": {k: v.to_dict() for k, v in self.by_task.items()},
            "by_target": {k: v.to_dict() for k, v in self.by_target.items()},
            "by_provider": {k: v.to_dict() for k, v in self.by_provider.items()},
            "max_cost": self.max_cost,
            "max_images": self.max_images,
            "prices": self.prices,
            "notes": list(self.notes),
        }
