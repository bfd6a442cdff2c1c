"""How an emulator behaves, checked once at construction so a bad knob fails before a socket is opened."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from batchcap.errors import ConfigError

__all__ = ["DEFAULT_MODEL_ID", "DEFAULT_TOKEN", "EmulatorSettings", "LatencyDist"]

DEFAULT_TOKEN = "hf_emulator_token"
DEFAULT_MODEL_ID = "Salesforce/blip-image-captioning-base"

LatencyDist = Literal["fixed", "uniform", "exponential"]


@dataclass(frozen=True, slots=True)
class EmulatorSettings:
    """How the emulator behaves. The defaults answer every request at once and correctly.

    ``latency`` is the mean delay of a request that reaches the model; ``latency_dist`` its shape (``fixed``,
    ``uniform`` on [0, 2*latency], ``exponential``); ``latency_jitter`` adds uniform noise in [-j, +j]. ``burst``
    defaults to ``max(1, int(rate))``. ``cold_start`` seconds are counted from the first request admitted to a
    model route: refused requests (401, 413, 429) and health probes do not wake the model.
    """

    auth: Literal["public", "protected"] = "public"
    tokens: tuple[str, ...] = field(default=(DEFAULT_TOKEN,), repr=False)
    rate: float | None = None
    burst: int | None = None
    retry_after: bool = False
    cold_start: float = 0.0
    cold_start_status: int = 503
    latency: float = 0.0
    latency_jitter: float = 0.0
    latency_dist: LatencyDist = "fixed"
    fail_rate: float = 0.0
    seed: int = 0
    max_body_bytes: int = 20 * 1024 * 1024
    model_id: str = DEFAULT_MODEL_ID
    name: str = "emulator"

    def __post_init__(self) -> None:
        def bad(what: str, flag: str) -> ConfigError:
            return ConfigError(f"emulator {what}; pass a valid {flag} or change EmulatorSettings")

        if self.auth not in ("public", "protected"):
            raise bad(f"auth must be 'public' or 'protected' (got {self.auth!r})", "--auth")
        if self.auth == "protected" and not any(self.tokens):
            raise bad("auth='protected' needs at least one token", "--token-file")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise bad(f"rate must be a finite number > 0, or None for unlimited (got {self.rate})", "--rate")
        if self.burst is not None and self.burst < 1:
            raise bad(f"burst must be >= 1 (got {self.burst})", "--burst")
        for name in ("cold_start", "latency", "latency_jitter"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise bad(f"{name} must be a finite number >= 0 (got {value})", "--" + name.replace("_", "-"))
        if self.cold_start_status not in (502, 503):
            raise bad(
                f"cold_start_status must be 502 or 503 (got {self.cold_start_status})", "--cold-start-status"
            )
        if self.latency_dist not in ("fixed", "uniform", "exponential"):
            raise bad(
                f"latency_dist must be fixed, uniform or exponential (got {self.latency_dist!r})",
                "--latency-dist",
            )
        if not 0.0 <= self.fail_rate <= 1.0:
            raise bad(f"fail_rate must be within [0, 1] (got {self.fail_rate})", "--fail-rate")
        if self.max_body_bytes < 1:
            raise bad(f"max_body_bytes must be >= 1 (got {self.max_body_bytes})", "max_body_bytes")

    @property
    def effective_burst(self) -> int:
        """The bucket size in force: the explicit ``burst`` or ``max(1, int(rate))``."""
        if self.burst is not None:
            return self.burst
        return max(1, int(self.rate or 1))

    def describe(self) -> str:
        """One line for logs and the ``serve`` banner; never shows a token."""
        rate = "unlimited" if self.rate is None else f"{self.rate:g}/s burst={self.effective_burst}"
        jitter = f"±{self.latency_jitter:g}" if self.latency_jitter else ""
        return (
            f"auth={self.auth}, rate={rate}, retry_after={'on' if self.retry_after else 'off'}, "
            f"cold_start={self.cold_start:g}s/{self.cold_start_status}, "
            f"latency={self.latency:g}s{jitter} {self.latency_dist}, fail_rate={self.fail_rate:g}, seed={self.seed}"
        )
