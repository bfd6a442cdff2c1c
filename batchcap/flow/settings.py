"""``Limits``: how hard one target is driven (requests in flight, rate, burst) and how long each image may take
(timeout, retries, waits). Declared once here; ``RunConfig.limits`` carries it, ``bench`` and ``check`` read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from batchcap.errors import ConfigError
from batchcap.settings import check_number, check_whole, parse_float, parse_int, setting

from .concurrency import ConcurrencySpec, parse_concurrency

__all__ = ["SERVERLESS_RATE", "Limits", "Rate", "parse_rate"]

#: The serverless API's rate when none is set: conservative, for a shared free tier (protocol.md 7).
SERVERLESS_RATE = 2.0

#: Requests per second; None = no client-side limit (still lowered on 429); "auto" = by target (``Limits.rate_for``).
Rate = float | Literal["auto"] | None


def parse_rate(value: Any, name: str = "rate") -> Rate:
    """``unlimited``/``inf``/``none``/``off`` mean no client-side limit (the limiter still backs off on 429);
    ``auto`` is the target-aware default (see ``Limits.rate_for``)."""
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("unlimited", "inf", "none", "off"):
            return None
        if word == "auto":
            return "auto"
        try:
            value = float(word)
        except ValueError:
            raise ConfigError(f"--rate must be a number of requests/s, 'unlimited' or 'auto' (got {value!r})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"--rate must be a number of requests/s, 'unlimited' or 'auto' (got {value!r})")
    if math.isinf(value) and value > 0:
        return None
    if not value > 0 or math.isnan(value):
        raise ConfigError(f"--rate must be > 0 requests/s (got {value}); use 'unlimited' for no limit")
    return float(value)


def _concurrency(value: Any, name: str = "concurrency") -> ConcurrencySpec:
    return parse_concurrency(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """The flow settings of one target. ``concurrency`` is a ceiling the adaptive limit stays under (``N``), or
    a fixed pool (``fixed:N``)."""

    concurrency: ConcurrencySpec = setting(ConcurrencySpec("adaptive", 4), parse=_concurrency)
    rate: Rate = setting("auto", parse=parse_rate)
    burst: int = setting(4, parse=parse_int)
    timeout: float = setting(60.0, parse=parse_float)
    retries: int = setting(5, parse=parse_int)
    max_wait: float = setting(1800.0, parse=parse_float)

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, ConcurrencySpec):  # RunConfig.build(concurrency=16)
            object.__setattr__(self, "concurrency", parse_concurrency(self.concurrency))
        if self.rate not in (None, "auto"):
            object.__setattr__(self, "rate", parse_rate(self.rate))
        check_whole(self.burst, "burst", minimum=1)
        check_number(self.timeout, "timeout", above=0)
        check_whole(self.retries, "retries", minimum=0)
        check_number(self.max_wait, "max_wait", at_least=0)

    @property
    def ceiling(self) -> int:
        """The most requests in flight (the adaptive limit's ceiling, or the fixed pool's size)."""
        return self.concurrency.n

    @property
    def adaptive(self) -> bool:
        return self.concurrency.adaptive

    def rate_for(self, *, serverless: bool) -> float | None:
        """The rate the limiter starts at: the setting, or for "auto" a conservative one for the free serverless
        API and none for an Endpoint or a chat server (they still adapt on 429)."""
        if self.rate == "auto":
            return SERVERLESS_RATE if serverless else None
        return self.rate
