"""``--probe N``: N real caption requests to measure a target's latency, what it bills, and its captions.

The only part of ``check`` that sends anything. One attempt per image, no retries, at the run's own rate
limit and ``min(concurrency, N)`` in flight, through the same client a run uses (``service.connect``), with the
images prepared as a run prepares them (a VLM bills by the pixels it gets, so the tokens are those a run would
pay for). A chat target's prices come as a run's do (``--token-price``, else its ``/v1/models``); each answer's
``usage`` is priced at the provider that served it. Nothing is written to the journal: a probe's captions
are not kept (they cost N requests; the output says so).
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
from batchcap.errors import APIError, InputError, RateLimited
from batchcap.flow.budget import TokenPrice
from batchcap.flow.ratelimit import RateLimiter
from batchcap.models import LoadedImage
from batchcap.prepare import PreparePool, prepared_image, wire_size_for
from batchcap.service.auth import Secret
from batchcap.service.client import CaptionClient, Reply
from batchcap.service.connect import make_client
from batchcap.service.pricing import PriceList, fetch_prices
from batchcap.service.protocols import make_adapter
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
    costs: dict[str, float] = field(default_factory=dict)  #: path -> what its answer cost (priced answers only)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    providers: Counter[str] = field(default_factory=Counter)
    prices: str | None = None  #: the prices used, and where they came from
    notes: list[str] = field(default_factory=list)

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
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "providers": dict(self.providers),
            "prices": self.prices,
            "cost_usd": round(sum(self.costs.values()), 9) if self.costs else None,
            "notes": self.notes,
        }


async def probe(
    cfg: RunConfig,
    images: Sequence[LoadedImage],
    *,
    token: Secret | None = None,
    quality: QualitySettings = DEFAULT_QUALITY,
    token_price: TokenPrice | None = None,
    priced_by_tokens: bool = True,
) -> ProbeResult:
    """Caption ``images`` once each; errors are counted by class, never raised (but for a bad config).

    ``priced_by_tokens`` False: the target bills by the hour (``--price-per-hour``), so no token prices are looked up.
    """
    result = ProbeResult()
    if not images:
        return result
    images, unsendable = await _prepared(cfg, images)
    for exc in unsendable:
        result.errors[type(exc).__name__] += 1
    target, limits = cfg.target, cfg.limits
    limiter = RateLimiter(cfg.request_rate, limits.burst)
    prompt = target.prompt if target.takes_prompt else None
    queue = list(reversed(images))
    started = time.monotonic()
    client = make_client(target, token=token, timeout=limits.timeout, connections=min(limits.ceiling, len(images)),
                         max_wait=limits.max_wait)

    prices: PriceList | None = None
    if target.api == "openai" and priced_by_tokens:
        if token_price is not None:
            prices = PriceList(source="--token-price", fixed=token_price)
        elif isinstance(client, CaptionClient):
            async with client:
                prices, why = await fetch_prices(client, target.model or "")
            if why:
                result.notes.append(why)
        result.prices = None if prices is None else prices.describe()

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
            _bill(result, image.job.path, reply, prices)
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


def _bill(result: ProbeResult, path: str, reply: Reply, prices: PriceList | None) -> None:
    """One answer's usage, priced at the provider that served it (no price: counted, not priced)."""
    usage = reply.usage
    if usage is None:
        return
    result.prompt_tokens += usage.prompt_tokens
    result.completion_tokens += usage.completion_tokens
    if reply.provider is not None:
        result.providers[reply.provider] += 1
    price = None if prices is None else prices.price(reply.provider)
    if price is None:
        note = f"no price is known for provider {reply.provider or '(not named)'}: pass --token-price IN,OUT"
        if prices is not None and note not in result.notes:
            result.notes.append(note)
        return
    result.costs[path] = price.cost(usage.prompt_tokens, usage.completion_tokens)


async def _prepared(cfg: RunConfig, images: Sequence[LoadedImage]) -> tuple[list[LoadedImage], list[InputError]]:
    """The images as a run would send them (``--max-side 0``: as they are), and those it could not send."""
    if not cfg.prepare.enabled:
        return list(images), []
    pool = PreparePool(cfg.prepare, wire_size=wire_size_for(make_adapter(cfg.target)))
    ready: list[LoadedImage] = []
    failed: list[InputError] = []
    for image in images:
        got = pool.triage(image)
        if isinstance(got, InputError):
            failed.append(got)
            continue
        if got.prep is None:
            try:
                got = prepared_image(got, await pool.prepare(got.data))
            except InputError as exc:
                failed.append(exc)
                continue
        ready.append(got)
    return ready, failed
