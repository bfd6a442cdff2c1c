"""A small closed-loop sender for proving the concurrency limiter on real sockets, without the pipeline.

``drive`` captions a list of images through ``CaptionClient`` with ``ConcurrencyLimiter`` in front of every
attempt, retrying transient failures (a timed-out request waits ``timeout_retry_delay`` first) up to a bounded
number of attempts. It is what the pipeline's sender pool will do once the lead wires the limiter in; the
strict emulator tests and ``benchmarks/bench_adaptive.py`` share it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import anyio

from batchcap.config import RunConfig
from batchcap.errors import APIError, TransientError
from batchcap.flow.concurrency import ConcurrencyLimiter, outcome_of, timeout_retry_delay
from batchcap.models import ImageJob, LoadedImage
from batchcap.service.client import CaptionClient
from batchcap.service.protocols import make_adapter

__all__ = ["DriveResult", "drive", "jpeg_images"]


@dataclass
class DriveResult:
    ok: int = 0
    failed: int = 0
    calls: int = 0
    timeouts: int = 0
    wall: float = 0.0
    captions: dict[int, str] = field(default_factory=dict)
    limits: list[int] = field(default_factory=list)  #: the limit after each finished attempt

    @property
    def throughput(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0


def jpeg_images(n: int, *, seed: int = 0) -> list[LoadedImage]:
    """``n`` distinct small JPEGs (their captions differ by size), as the reader stage would load them."""
    import io

    from PIL import Image

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (16 + i % 97, 16 + (i * 7 + seed) % 89), (200, 30, 30)).save(buf, "JPEG")
        data = buf.getvalue()
        out.append(LoadedImage(ImageJob(f"{i}.jpg", f"/nowhere/{i}.jpg", len(data)), data, "image/jpeg"))
    return out


async def drive(
    url: str,
    images: list[LoadedImage],
    limiter: ConcurrencyLimiter,
    *,
    timeout: float,
    max_attempts: int = 8,
    backoff: float = 0.05,
) -> DriveResult:
    """Caption every image once (bounded attempts each); the limiter decides how many are in flight."""
    adapter = make_adapter(RunConfig.build(api="hf", endpoint=url).target)
    result = DriveResult()
    pending: deque[tuple[int, float]] = deque((i, 0.0) for i in range(len(images)))
    attempts = [0] * len(images)
    workers = limiter.algorithm.ceiling
    started = time.monotonic()

    async def one(client: CaptionClient, i: int) -> float | None:
        """One attempt; returns the delay before a retry, or None when the image is finished."""
        ticket = await limiter.acquire()
        result.calls += 1
        attempts[i] += 1
        try:
            reply = await client.caption(images[i])
        except APIError as exc:
            outcome = outcome_of(exc)
            limiter.release(ticket, outcome)
            result.limits.append(limiter.limit)
            result.timeouts += outcome == "timeout"
            if not isinstance(exc, TransientError) or attempts[i] >= max_attempts:
                result.failed += 1
                return None
            if outcome == "timeout":
                return timeout_retry_delay(limiter.stats().floor, limiter.inflight, limiter.limit)
            return backoff * attempts[i]
        limiter.release(ticket, "ok")
        result.limits.append(limiter.limit)
        result.ok += 1
        result.captions[i] = reply.caption
        return None

    async def worker(client: CaptionClient) -> None:
        while pending:
            i, not_before = pending.popleft()
            if (wait := not_before - time.monotonic()) > 0:
                await anyio.sleep(wait)
            delay = await one(client, i)
            if delay is not None:
                pending.appendleft((i, time.monotonic() + delay))

    client = CaptionClient(url, adapter, timeout=timeout, connections=workers + 4)
    async with client, anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker, client)
    result.wall = time.monotonic() - started
    return result
