"""The mutable state of one emulator, and the keys it is stored under in the aiohttp app and request.

State lives in the app rather than in module globals, so two emulators in one process (the bench demo runs a
"free API" and an "endpoint" side by side) never share a rate bucket, a cold-start clock or a random stream.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batchcap.emulator.capacity import ModelPool
from batchcap.emulator.captions import Decoded
from batchcap.emulator.log import RequestLog, RouteKind
from batchcap.emulator.settings import EmulatorSettings

__all__ = ["REQUEST_LOG"]


@dataclass(slots=True)
class _TokenBucket:
    """Admission arithmetic only, so it can be reasoned about with plain floats."""

    rate: float
    burst: int
    tokens: float
    updated: float | None = None

    def take(self, now: float) -> float:
        """Admit one request at ``now`` (returns 0.0) or return the seconds until one would be admitted."""
        if self.updated is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class _FixedWindow:
    """A fixed-window counter on epoch-aligned windows of the wall clock (how LiteLLM counts ``rpm``)."""

    quota: int
    seconds: float
    start: float = -math.inf
    used: int = 0

    def take(self, now: float) -> tuple[bool, int, float]:
        """Admit a request at wall time ``now``? ``(admitted, requests left, seconds to the window's end)``."""
        start = math.floor(now / self.seconds) * self.seconds
        if start != self.start:
            self.start, self.used = start, 0
        reset = max(0.0, start + self.seconds - now)
        if self.used >= self.quota:
            return False, 0, reset
        self.used += 1
        return True, self.quota - self.used, reset


REQUEST_LOG = web.AppKey("request_log", RequestLog)


@dataclass(slots=True)
class _State:
    """Mutable state lives in the app, so two emulators in one process never share a bucket or a clock."""

    settings: EmulatorSettings
    bucket: _TokenBucket | None
    rng: random.Random
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    loaded_at: float | None = None  # set by the first admitted model request
    pool: ModelPool | None = None  # None: unlimited capacity, every request runs at once
    credits_used: int = 0  # model requests admitted, counted against ``settings.credits``
    window: _FixedWindow | None = None  # the fixed-window limit, when ``settings.window_quota`` is set
    json_asked: set[bytes] = field(default_factory=set)  # (image, prompt) pairs already given a JSON answer

    def delay(self) -> float:
        """Seconds this answer waits, drawn from the seeded generator (see :class:`EmulatorSettings`)."""
        s = self.settings
        if s.latency_dist == "uniform":
            base = self.rng.uniform(0.0, 2.0 * s.latency)
        elif s.latency_dist == "exponential" and s.latency > 0:
            base = self.rng.expovariate(1.0 / s.latency)
        else:
            base = s.latency
        if s.latency_jitter:
            base += self.rng.uniform(-s.latency_jitter, s.latency_jitter)
        return max(0.0, base)


@dataclass(slots=True)
class _Ctx:
    """Per-request facts the tracking middleware logs once the answer is known."""

    n: int
    rid: str
    t: float
    kind: RouteKind = "other"
    nbytes: int = 0
    decoded: Decoded | None = None
    fault: str = ""
    queued: float = 0.0
    headers: dict[str, str] | None = None  # added to the answer (a fixed window's quota headers)
    prompt: str = ""  #: chat: the text parts of the request, its max_tokens and model (what the bill counts)
    max_tokens: int | None = None
    model: str = ""
    usage: tuple[int, int] | None = None  #: chat: the bill, set by the answer
    provider: str = ""
    cost: float = 0.0
    image: str = ""
    schema: dict[str, Any] | None = None  #: chat: the JSON schema asked for (``response_format``)


_STATE = web.AppKey("emulator_state", _State)
_CTX = web.RequestKey("emulator_ctx", _Ctx)
