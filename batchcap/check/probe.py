"""``--probe N``: N real caption requests to measure a target's latency (and judge its captions).

The only part of ``check`` that sends anything. One attempt per image, no retries, at the run's own rate
limit and ``min(concurrency, N)`` in flight, through the same client a run uses (``service.connect``). Nothing is
written to the journal: a probe's captions are not kept (they cost N requests; the output says so).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from batchcap.config import RunConfig
from batchcap.errors import APIError, RateLimited
from batchcap.flow.ratelimit import RateLimiter
from batchcap.models import LoadedImage
from batchcap.service.auth import Secret
from batchcap.service.connect import make_client
from batchcap.tasks.quality import DEFAULT_QUALITY, QualitySettings, judge

__all__ = ["ProbeResult", "probe"]


@dataclass(slots=True)
class ProbeResult:
    """What N requests showed; ``latency_s`` is the mean of the ok ones (Little's law wants the mean)."""

    requests: int = 0
    ok: int = 0
    throttled: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    flags: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    bytes_sent: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latency_s(self) -> float | None:
        return statistics.fmean(self.latencies) if self.latencies else None

    def to_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "requests": self.requests,
            "ok": self.ok,
            "throttled": self.throttled,
            "errors": dict(self.errors),
            "latency_mean_s": None if not lat else round(statistics.fmean(lat), 4),
            "latency_p50_s": None if not lat else round(lat[len(lat) // 2], 4),
            "latency_max_s": None if not lat else round(lat[-1], 4),
            "quality_flags": dict(self.flags),
            "elapsed_s": round(self.elapsed_s, 3),
            "bytes_sent": self.bytes_sent,
            "examples": self.examples,
        }


async def probe(
    cfg: RunConfig,
    images: Sequence[LoadedImage],
    *,
    token: Secret | None = None,
    quality: QualitySettings = DEFAULT_QUALITY,
) -> ProbeResult:
    """Caption ``images`` once each; errors are counted by class, never raised (but for a bad config)."""
    result = ProbeResult()
    if not images:
        return result
    target, limits = cfg.target, cfg.limits
    limiter = RateLimiter(cfg.request_rate, limits.burst)
    prompt = target.prompt if target.takes_prompt else None
    queue = list(reversed(images))
    started = time.monotonic()
    client = make_client(target, token=token, timeout=limits.timeout, connections=min(limits.ceiling, len(images)),
                         max_wait=limits.max_wait)

    async def worker() -> None:
        while queue:
            image = queue.pop()
            await limiter.acquire()
            result.requests += 1
            try:
                reply = await client.caption(image)
            except APIError as exc:
                if isinstance(exc, RateLimited):
                    result.throttled += 1
                    limiter.throttled(exc.retry_after)
                result.errors[type(exc).__name__] += 1
                continue
            limiter.succeeded()
            result.ok += 1
            result.bytes_sent += reply.bytes_sent
            result.latencies.append(reply.latency_s)
            flags = judge(reply.caption, finish_reason=reply.finish_reason, prompt=prompt, settings=quality)
            result.flags.update(flags)
            if len(result.examples) < 5:
                result.examples.append({"path": image.job.path, "caption": reply.caption, "flags": list(flags)})

    async with client, anyio.create_task_group() as tg:
        for _ in range(min(limits.ceiling, len(images))):
            tg.start_soon(worker)
    result.elapsed_s = time.monotonic() - started
    return result
