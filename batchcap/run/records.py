"""The records one image's attempts end with, built in one place: an ``ok`` line (with its quality flags and
what it cost), an ``error`` line (retryable or final), a caption refused by the quality gates
(``--on-bad-caption error``); and the journal's view of an error."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from batchcap.errors import APIError, BadCaption, BatchcapError, QuotaExhausted, TransientError
from batchcap.models import DEFAULT_TASK, ErrorInfo, LoadedImage, Record
from batchcap.run.spend import Bill
from batchcap.service.client import Reply
from batchcap.words import plural

__all__ = ["RecordTag", "bad_caption_record", "error_info", "failure_record", "ok_record", "quota_note"]


@dataclass(frozen=True, slots=True)
class RecordTag:
    """Which task a record answers and the fingerprint of what asked it (``batchcap.tasks.fingerprint``)."""

    task: str = DEFAULT_TASK
    fingerprint: str | None = None


_UNTAGGED = RecordTag()


def error_info(exc: BatchcapError, *, retryable: bool) -> ErrorInfo:
    """The journal's view of an error: its class name, the message, the HTTP status."""
    status = exc.status if isinstance(exc, APIError) else None
    message = exc.message if isinstance(exc, APIError) else str(exc)
    return ErrorInfo(type(exc).__name__, message, status, retryable)


def quota_note(exc: QuotaExhausted) -> str:
    """The progress line while a Space's GPU quota is spent: how long until it comes back, and when."""
    from batchcap.service.space.words import format_wait

    if exc.retry_after is None:
        return "GPU quota spent: waiting (the Space named no time)"
    at = "" if exc.resets_at is None else time.strftime(" (at %H:%M)", time.localtime(exc.resets_at))
    return f"GPU quota spent: waiting {format_wait(exc.retry_after)}{at}"


def ok_record(image: LoadedImage, reply: Reply, attempts: int, flags: tuple[str, ...], bill: Bill | None,
              target: str, *, tag: RecordTag = _UNTAGGED, data: Any = None) -> Record:
    return Record(
        image.job.path, "ok", caption=reply.caption, attempts=attempts,
        latency_s=round(reply.latency_s, 4), bytes_sent=reply.bytes_sent, target=target,
        request_id=reply.request_id, ts=time.time(), flags=flags, prep=image.prep,
        usage=bill.usage if bill else None, provider=bill.provider if bill else None,
        cost_usd=bill.cost_usd if bill else None, task=tag.task, data=data, fingerprint=tag.fingerprint,
        digest=image.digest,
    )


def failure_record(image: LoadedImage, exc: APIError, attempts: int, bill: Bill | None, target: str, *,
                   retryable: bool | None = None, tag: RecordTag = _UNTAGGED) -> Record:
    """A transient error is retried by the next run (``retryable``), a permanent one is final."""
    retry = isinstance(exc, TransientError) if retryable is None else retryable
    return Record(
        image.job.path, "error", error=error_info(exc, retryable=retry),
        attempts=attempts, bytes_sent=len(image.data), target=target, request_id=exc.request_id,
        ts=time.time(), usage=bill.usage if bill else None, provider=bill.provider if bill else None,
        cost_usd=bill.cost_usd if bill else None, task=tag.task, fingerprint=tag.fingerprint, digest=image.digest,
    )


def bad_caption_record(image: LoadedImage, reply: Reply, flags: tuple[str, ...], attempts: int, bill: Bill | None,
                       target: str, *, tag: RecordTag = _UNTAGGED) -> Record:
    """``--on-bad-caption error``: the caption is not kept; the error is final (a rerun would pay again)."""
    exc = BadCaption(f"caption failed the quality gates ({', '.join(flags)}) after {plural(attempts, 'attempt')}: "
                     f"{reply.caption[:80]!r}", flags=flags, status=reply.status, request_id=reply.request_id)
    return Record(
        image.job.path, "error", error=error_info(exc, retryable=False), attempts=attempts,
        latency_s=round(reply.latency_s, 4), bytes_sent=reply.bytes_sent, target=target,
        request_id=reply.request_id, ts=time.time(), flags=flags, usage=bill.usage if bill else None,
        provider=bill.provider if bill else None, cost_usd=bill.cost_usd if bill else None,
        task=tag.task, fingerprint=tag.fingerprint, digest=image.digest,
    )
