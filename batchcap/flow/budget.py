"""What a run may spend: ``--max-cost USD`` and ``--max-images N``, held under any concurrency.

Budget caps leak when they are checked after the fact (aiXplain#1100: a cap "sent but not enforced", 1,788x
over; litellm#12794: no budget check in batch). Here every attempt *reserves* its worst case before it starts
and *settles* with its actual cost when it ends, so recorded spend can never pass the cap whatever the number
of requests in flight::

    verdict = budget.reserve(cost=0.0021, images=1)   # "go" (reserved), "wait" (in-flight reserves may free
                                                      # room) or "refuse" (it can never fit: stop starting)
    budget.settle(reserved=0.0021, actual=0.0007)     # the attempt is over: the reserve becomes its real cost
    budget.settle_images(reserved=1, done=1)          # the image has its record (0: it will be tried again)

``Budget`` is the arithmetic with plain floats; ``BudgetGate`` the thin async wrapper the senders await
(``await gate.reserve(meter.reserve)`` waits on "wait", asking the meter again each time, and raises
``BudgetReached`` on "refuse"). Once one reservation
is refused the budget is closed: every later one is refused too, the requests in flight finish and are
written, and the run stops (``run.guard.budget_stop`` words it). Spend recorded by earlier runs of the same
journal is passed in as ``spent`` / ``images``: the cap is for the whole job, not for one invocation.

An attempt whose worst case cannot be known yet (a target's first request, before any ``usage`` or latency
was seen) is reserved ``alone``: it waits until nothing else is in flight, and nothing starts beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from batchcap.errors import BudgetReached, ConfigError
from batchcap.settings import parse_float, parse_int, setting

__all__ = ["Budget", "BudgetGate", "BudgetSettings", "TokenPrice", "Verdict", "parse_token_price"]

Verdict = Literal["go", "wait", "refuse"]

#: Float sums of many small costs drift in the last bits; a cap is not "crossed" by less than this.
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per million input (prompt) and output (completion) tokens, as the HF router lists them."""

    input: float
    output: float

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value >= 0
            ):
                raise ConfigError(f"--token-price: the {name} price must be >= 0 USD per 1M tokens (got {value!r})")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for these tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6

    def __str__(self) -> str:
        return f"${self.input:g} in / ${self.output:g} out per 1M tokens"


def parse_token_price(text: str) -> TokenPrice:
    """``"IN,OUT"`` (USD per 1M input and output tokens, e.g. ``0.2,0.8``; a ``$`` is allowed) -> TokenPrice."""
    parts = [p.strip().removeprefix("$") for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        price_in, price_out = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"--token-price must be IN,OUT in USD per 1M input and output tokens, e.g. 0.2,0.8 "
                          f"(got {text!r})") from None
    return TokenPrice(price_in, price_out)


def _token_price_setting(value: Any, name: str = "token_price") -> TokenPrice | None:
    """A profile's ``token_price = "0.2,0.8"`` or ``[0.2, 0.8]``, or the flag's text."""
    if value is None or isinstance(value, TokenPrice):
        return value
    if isinstance(value, list | tuple) and len(value) == 2:
        return TokenPrice(parse_float(value[0], name), parse_float(value[1], name))
    return parse_token_price(str(value))


def _optional_float(value: Any, name: str = "max_cost") -> float | None:
    return None if value is None else parse_float(value, name)


def _optional_int(value: Any, name: str = "max_images") -> int | None:
    return None if value is None else parse_int(value, name)


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """The money settings of a run (``RunConfig.budget``). ``token_price`` overrides a target's ``/v1/models``."""

    token_price: TokenPrice | None = setting(None, parse=_token_price_setting)  #: ``--token-price IN,OUT``
    max_cost: float | None = setting(None, parse=_optional_float)  #: ``--max-cost USD``: the whole job's cap
    max_images: int | None = setting(None, parse=_optional_int)  #: ``--max-images N``: the whole job's, done

    def __post_init__(self) -> None:
        if self.max_cost is not None and (
            isinstance(self.max_cost, bool) or not isinstance(self.max_cost, int | float)
            or not (math.isfinite(self.max_cost) and self.max_cost > 0)
        ):
            raise ConfigError(f"--max-cost must be a number of dollars > 0 (got {self.max_cost!r})")
        if self.max_images is not None and (
            isinstance(self.max_images, bool) or not isinstance(self.max_images, int) or self.max_images < 1
        ):
            raise ConfigError(f"--max-images must be a whole number >= 1 (got {self.max_images!r})")
        if self.token_price is not None and not isinstance(self.token_price, TokenPrice):
            raise ConfigError(f"--token-price must be IN,OUT (got {self.token_price!r})")

    @property
    def capped(self) -> bool:
        """Whether any cap is set (without one, no reservation is made at all)."""
        return self.max_cost is not None or self.max_images is not None


class Budget:
    """Reservations against ``max_cost`` dollars and ``max_images`` images; pure arithmetic, no clock."""

    __slots__ = ("_alone", "_in_flight", "closed", "max_cost", "max_images", "refused_for", "reserved",
                 "reserved_images", "spent", "spent_images")

    def __init__(self, *, max_cost: float | None = None, max_images: int | None = None, spent: float = 0.0,
                 images: int = 0) -> None:
        self.max_cost = max_cost
        self.max_images = max_images
        self.spent = spent  #: settled dollars, earlier runs' included
        self.spent_images = images  #: images done, earlier runs' included
        self.reserved = 0.0  #: dollars held by attempts in flight
        self.reserved_images = 0  #: images held by images in flight
        self._in_flight = 0  #: attempts holding a reservation
        self._alone = False  #: an attempt reserved alone is in flight
        self.closed = False  #: a reservation was refused: nothing starts any more
        self.refused_for: Literal["cost", "images"] | None = None  #: which cap refused first

    def reserve(self, cost: float, images: int = 0, *, alone: bool = False) -> Verdict:
        """Reserve ``cost`` dollars and ``images`` images for one attempt ("go"), or say why not."""
        if self.closed:
            return "refuse"
        if self.max_images is not None and self.spent_images + images > self.max_images:
            return self._close("images")
        if self.max_cost is not None and self.spent + cost > self.max_cost + _EPS:
            return self._close("cost")
        if self._alone or (alone and self._in_flight):
            return "wait"
        if self.max_images is not None and self.spent_images + self.reserved_images + images > self.max_images:
            return "wait"
        if self.max_cost is not None and self.spent + self.reserved + cost > self.max_cost + _EPS:
            return "wait"
        self.reserved += cost
        self.reserved_images += images
        self._in_flight += 1
        self._alone = alone
        return "go"

    def settle(self, reserved: float, actual: float) -> None:
        """An attempt that reserved ``reserved`` dollars is over and cost ``actual``."""
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual
        self._in_flight -= 1
        self._alone = False
        if not self._in_flight:
            self.reserved = 0.0  # no drift: nothing is in flight

    def settle_images(self, reserved: int, done: int) -> None:
        """An image that reserved ``reserved`` got its record (``done`` 1) or will be tried again (0)."""
        self.reserved_images -= reserved
        self.spent_images += done

    def _close(self, cap: Literal["cost", "images"]) -> Verdict:
        self.closed = True
        self.refused_for = cap
        return "refuse"

    @property
    def room(self) -> float | None:
        """Dollars left under the cap, reservations counted (None: no cost cap)."""
        return None if self.max_cost is None else self.max_cost - self.spent - self.reserved

    def __repr__(self) -> str:
        cap = "none" if self.max_cost is None else f"${self.max_cost:g}"
        images = "" if self.max_images is None else f" images={self.spent_images}+{self.reserved_images}/" \
                                                    f"{self.max_images}"
        return (f"<Budget spent=${self.spent:.6g} reserved=${self.reserved:.6g} cap={cap}{images} "
                f"in_flight={self._in_flight}{' closed' if self.closed else ''}>")


class BudgetGate:
    """The async side of a ``Budget``: one per run, shared by every sender and every target."""

    __slots__ = ("_changed", "budget")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._changed = anyio.Event()

    async def reserve(self, quote: Callable[[], tuple[float, bool]], images: int = 0) -> float:
        """Wait until one attempt fits and reserve it; return the dollars reserved. ``quote()`` gives the attempt's
        worst case and whether it must go alone, asked again after every wait (it shrinks as answers teach the
        meter what a request costs). ``BudgetReached`` when it never will fit (nothing was reserved then)."""
        while True:
            cost, alone = quote()
            verdict = self.budget.reserve(cost, images, alone=alone)
            if verdict == "go":
                return cost
            if verdict == "refuse":
                self._wake()  # the waiters find the budget closed too
                raise BudgetReached(self.budget.refused_for or "cost")
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()

    def settle(self, reserved: float, actual: float) -> None:
        self.budget.settle(reserved, actual)
        self._wake()

    def settle_images(self, reserved: int, done: int) -> None:
        self.budget.settle_images(reserved, done)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()

    def __repr__(self) -> str:
        return f"<BudgetGate {self.budget!r}>"
