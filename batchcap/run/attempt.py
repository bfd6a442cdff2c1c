"""One image's attempts: acquire a token, ask once, and let the policy and the guard judge each failure.

    while True:
        await limiter            -> client.caption(image) -> ok: Record("ok")
        failure: guard.after_attempt (run-level stop?) -> policy.decide (retry or record)
                 -> record: guard.before_record (N identical refusals?) -> Record("error")
                 -> retry: sleep the decision's delay

A run-level stop raises ``RunAborted`` (the image gets no record, so the next run retries it); everything else
ends as exactly one ``Record``.
"""

from __future__ import annotations

import random
import time

import anyio

from batchcap.client import CaptionClient
from batchcap.errors import APIError, BatchcapError, RateLimited, RunAborted, TransientError
from batchcap.models import ErrorInfo, LoadedImage, Record
from batchcap.progress import Progress
from batchcap.ratelimit import RateLimiter
from batchcap.retry import RetryPolicy

from .guard import RunGuard, Stop
from .stats import RunStats

__all__ = ["Captioner", "error_info"]


def error_info(exc: BatchcapError, *, retryable: bool) -> ErrorInfo:
    """The journal's view of an error: its class name, the message, the HTTP status."""
    status = exc.status if isinstance(exc, APIError) else None
    message = exc.message if isinstance(exc, APIError) else str(exc)
    return ErrorInfo(type(exc).__name__, message, status, retryable)


def abort(stop: Stop) -> RunAborted:
    return RunAborted(stop.message, kind=stop.kind)


class Captioner:
    """The per-run machinery every sender shares: one client, one limiter, one policy, one guard."""

    __slots__ = ("client", "guard", "limiter", "policy", "progress", "released", "rng", "stats", "target",
                 "try_acquire")

    def __init__(
        self, client: CaptionClient, *, limiter: RateLimiter, policy: RetryPolicy, guard: RunGuard,
        stats: RunStats, progress: Progress, target: str, seed: int | None = None,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.try_acquire = limiter.try_acquire  # unlimited and unpaused: a token without a coroutine
        self.policy = policy
        self.guard = guard
        self.stats = stats
        self.progress = progress
        self.target = target  # formatted once per run, not per record
        self.rng = random.Random(seed)
        self.released: list[Record] = []  #: records the guard held back and released: the senders write them

    async def caption(self, image: LoadedImage) -> Record | None:
        """Attempts until a caption, a final error, or a run-level stop (raised as ``RunAborted``).

        None: the image's final error is held by the guard (see ``guard``), to be written later or never.
        """
        attempts = retries_used = 0
        waited = 0.0
        while True:
            attempts += 1
            if not self.try_acquire():
                await self.limiter.acquire()
            self.stats.attempts += 1
            try:
                reply = await self.client.caption(image)
            except APIError as exc:
                if isinstance(exc, RateLimited):
                    self._throttled(exc)
                if (stop := self.guard.after_attempt(exc)) is not None:
                    raise abort(stop) from None
                decision = self.policy.decide(exc, retries_used=retries_used, waited=waited, rand=self.rng.random)
                if decision.action != "retry":
                    stop, record = self.guard.before_record(exc, self._failure(image, exc, attempts))
                    if stop is not None:
                        raise abort(stop) from None
                    return record
                self.stats.retries += 1
                if decision.spends_retry:
                    retries_used += 1
                else:
                    waited += decision.delay
                if decision.delay > 0:
                    await anyio.sleep(decision.delay)
                continue
            self.limiter.succeeded()
            if not self.guard.ok_seen:
                self.released.extend(self.guard.succeeded())
            else:
                self.guard.succeeded()
            self.stats.bytes_sent += reply.bytes_sent
            self.stats.latencies_sum += reply.latency_s
            return Record(
                image.job.path, "ok", caption=reply.caption, attempts=attempts,
                latency_s=round(reply.latency_s, 4), bytes_sent=reply.bytes_sent, target=self.target,
                request_id=reply.request_id, ts=time.time(), prep=image.prep,
            )

    def _throttled(self, exc: RateLimited) -> None:
        """A 429: the whole pool slows down (and pauses, given a hint)."""
        self.stats.throttled += 1
        hint = exc.retry_after
        self.limiter.throttled(None if hint is None else min(hint, self.policy.wait_cap))
        rate = self.limiter.bucket.rate
        self.progress.note(f"rate-limited: now {rate:.2g} req/s" if rate else "rate-limited")

    def _failure(self, image: LoadedImage, exc: APIError, attempts: int) -> Record:
        return Record(
            image.job.path, "error", error=error_info(exc, retryable=isinstance(exc, TransientError)),
            attempts=attempts, bytes_sent=len(image.data), target=self.target, request_id=exc.request_id,
            ts=time.time(),
        )
