"""One bench request: caption an image once with the project's own client, and turn the answer into data.

Errors are outcomes (counted by kind), except those that doom every request of a target (a refused token,
a wrong URL or model): those raise ``BenchAborted`` with the one abort message ``run`` uses too.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchcap.bench.loadgen import Outcome, Send
from batchcap.bench.spec import Target
from batchcap.bench.stats import ErrorKind
from batchcap.errors import (
    APIError,
    AuthError,
    BenchAborted,
    ModelLoading,
    RateLimited,
    ServerError,
    TransportError,
    WrongTarget,
    abort_message,
)
from batchcap.models import LoadedImage
from batchcap.service.client import CaptionClient

__all__ = ["error_kind", "make_sender", "pause_after"]


def error_kind(exc: APIError) -> ErrorKind:
    """The bench's error bucket for ``exc`` (see ``stats.ERROR_KINDS``)."""
    if isinstance(exc, RateLimited):
        return "429"
    if isinstance(exc, ModelLoading):
        return "503"
    if isinstance(exc, ServerError):
        return "5xx"
    if isinstance(exc, TransportError):
        return "timeout"
    return "other"


def pause_after(exc: APIError, throttle_pause: float) -> float:
    """How long a closed-loop worker rests after this error: the server's hint, else ``throttle_pause``."""
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else throttle_pause
    if isinstance(exc, ModelLoading):
        return min(exc.estimated_time or throttle_pause, throttle_pause)
    return 0.0


def make_sender(
    client: CaptionClient, images: Sequence[LoadedImage], sizes: Sequence[int], target: Target, token_source: str,
    throttle_pause: float,
) -> Send:
    """``send(i)``: caption image ``i mod n`` once; errors become data, except those that doom the target."""

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
            return Outcome(False, error_kind(exc), exc.status, sizes[k], pause_after(exc, throttle_pause), exc.message)
        return Outcome(True, None, reply.status, reply.bytes_sent)

    return send
