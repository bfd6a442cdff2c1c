"""One bench request: caption an image once with the project's own client, and turn the answer into data.

Errors are outcomes (counted by kind), except those that doom every request of a target (a refused token,
a wrong URL or model): those raise ``BenchAborted`` with the one abort message ``run`` uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchcap.bench.loadgen import Outcome, Send
from batchcap.bench.spec import Target
from batchcap.bench.stats import ErrorKind, SpaceQuota
from batchcap.errors import (
    APIError,
    AuthError,
    BenchAborted,
    ModelLoading,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    ServerError,
    TransportError,
    WrongTarget,
    abort_message,
)
from batchcap.models import LoadedImage
from batchcap.service.client import Reply, ServiceClient
from batchcap.service.pricing import PriceList

__all__ = ["QuotaWatch", "error_kind", "make_sender", "pause_after"]


def error_kind(exc: APIError) -> ErrorKind:
    """The bench's error bucket for ``exc`` (see ``stats.ERROR_KINDS``)."""
    if isinstance(exc, RateLimited):
        return "429"
    if isinstance(exc, ModelLoading | QueueFull):
        return "503"
    if isinstance(exc, ServerError):
        return "5xx"
    if isinstance(exc, TransportError):
        return "timeout"
    return "other"


def _cost(reply: Reply, prices: PriceList | None) -> float | None:
    usage = reply.usage
    price = None if prices is None or usage is None else prices.price(reply.provider)
    return None if price is None or usage is None else price.cost(usage.prompt_tokens, usage.completion_tokens)


def pause_after(exc: APIError, throttle_pause: float) -> float:
    """How long a closed-loop worker rests after this error: the server's hint, else ``throttle_pause``. A spent
    GPU quota is not waited out (it comes back in minutes or hours): the bench notes it and moves on."""
    if isinstance(exc, QuotaExhausted):
        return throttle_pause
    if isinstance(exc, QueueFull):
        return min(exc.retry_after or throttle_pause, throttle_pause)
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else throttle_pause
    if isinstance(exc, ModelLoading):
        return min(exc.estimated_time or throttle_pause, throttle_pause)
    return 0.0


@dataclass(slots=True)
class QuotaWatch:
    """Captions so far, and the first GPU-quota refusal of a Space (what the verdict's quota sentence says)."""

    ok: int = 0
    seen: SpaceQuota | None = None

    def refused(self, exc: QuotaExhausted) -> None:
        if self.seen is None:
            self.seen = SpaceQuota(self.ok, exc.retry_after, exc.message)


def make_sender(
    client: ServiceClient, images: Sequence[LoadedImage], sizes: Sequence[int], target: Target, token_source: str,
    throttle_pause: float, quota: QuotaWatch | None = None, prices: PriceList | None = None,
) -> Send:
    """``send(i)``: caption image ``i mod n`` once; errors become data, except those that doom the target.

    ``prices``: a token-billed target's; each answer's usage is priced at the provider that served it.
    """

    async def send(i: int) -> Outcome:
        k = i % len(images)
        try:
            reply = await client.caption(images[k])
        except (AuthError, WrongTarget) as exc:
            message = abort_message(
                exc, where=target.cfg.target.label, has_token=token_source != "none",
                token_flag=f"--token-file {target.name}=PATH", check=f"the URL or model ({target.cfg.target.label})",
            )
            raise BenchAborted(f"target {target.name}: {message}") from None
        except APIError as exc:
            if quota is not None and isinstance(exc, QuotaExhausted):
                quota.refused(exc)
            return Outcome(False, error_kind(exc), exc.status, sizes[k], pause_after(exc, throttle_pause), exc.message)
        if quota is not None:
            quota.ok += 1
        return Outcome(True, None, reply.status, reply.bytes_sent, cost_usd=_cost(reply, prices))

    return send
