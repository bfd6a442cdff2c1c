"""The one place a Space's words decide an error class: quota, a full queue, or the app's own refusal.

Gradio answers every outcome of a call with HTTP 200 and an ``error`` event whose text is all there is to go
on, so this module reads that text once and returns a class; everything after it decides by class::

    classify_error("You have exceeded your GPU quota (60s requested vs. 56s left). Try again in 0:09:48",
                   title="ZeroGPU quota exceeded", where="acme-blip.hf.space", now=time.time())
    -> QuotaExhausted(retry_after=588.0, resets_at=now + 588)

The texts are those of ZeroGPU (the ``spaces`` package, 0.51: "You have exceeded your free ZeroGPU quota
(60s requested vs. 56s left). Try again in 0:09:48.", older Spaces "... retry in 0:09:48"; "No GPU was
available after 60s"; "Space app has reached its GPU limit") and of Gradio's queue ("Queue is full. Max size
is 4 and size is 4.").
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchcap.errors import APIError, QueueFull, QuotaExhausted, RejectedImage, ServerError
from batchcap.flow.retry import retry_hint
from batchcap.service.protocols.base import classify

__all__ = ["QuotaWords", "classify_error", "classify_http", "format_wait", "parse_quota", "parse_wait"]

_WAIT = re.compile(
    r"(?:retry|try again)\s+in\s+(?:(?P<days>\d+)\s+days?,\s*)?(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)",
    re.IGNORECASE,
)
_USAGE = re.compile(r"\((?P<req>\d+(?:\.\d+)?)s requested vs\.? (?P<left>-?\d+(?:\.\d+)?)s left\)", re.IGNORECASE)
_QUOTA = re.compile(
    r"exceeded your .{0,40}?(?:GPU )?quota|exceeded your .{0,20}?runs limit|reached its GPU limit|"
    r"running out of .{0,20}?quota",
    re.IGNORECASE,
)
_BUSY = re.compile(r"No GPU was available|too many ZeroGPU credits allocated|Queue is full", re.IGNORECASE)
_SERVER = re.compile(r"^\s*(?:\d{3}: .*|Server stopped unexpectedly\.?)\s*$")
#: Longest text kept from the Space's message (its advice links are long and say nothing a log needs).
_MAX = 300


@dataclass(frozen=True, slots=True)
class QuotaWords:
    """What a quota message says: seconds requested and left (when given), and the wait until it comes back."""

    retry_after: float | None
    requested_s: float | None
    left_s: float | None


def parse_wait(text: str) -> float | None:
    """Seconds in "retry in H:MM:SS" / "Try again in 1 day, 2:03:04.5"; None when the text names no wait."""
    m = _WAIT.search(text)
    if m is None:
        return None
    days = int(m.group("days") or 0)
    return days * 86400 + int(m.group("h")) * 3600 + int(m.group("m")) * 60 + float(m.group("s"))


def parse_quota(text: str) -> QuotaWords | None:
    """The quota message's numbers, or None when ``text`` is not a GPU-quota message."""
    if _QUOTA.search(text) is None:
        return None
    usage = _USAGE.search(text)
    return QuotaWords(
        retry_after=parse_wait(text),
        requested_s=float(usage.group("req")) if usage else None,
        left_s=float(usage.group("left")) if usage else None,
    )


def format_wait(seconds: float) -> str:
    """``588`` -> ``0:09:48``, the Space's own way of saying it."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days} day{'s' if days != 1 else ''}, " if days else "") + f"{h}:{m:02d}:{s:02d}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text[:_MAX] + ("..." if len(text) > _MAX else "")


def classify_error(
    message: str | None, *, title: str | None = None, where: str, request_id: str | None = None,
    now: float | None = None,
) -> APIError:
    """The error class for an ``error`` event (``message`` None: the app raised without ``show_error``)."""
    if message is None:
        return RejectedImage(
            f"{where}: the app raised an error and does not show it (Gradio's show_error is off)",
            status=None, request_id=request_id,
        )
    said = _short(message)
    if (quota := parse_quota(message)) is not None:
        wait = quota.retry_after
        when = "" if wait is None else f"; it comes back in {format_wait(wait)}"
        resets_at = None if wait is None else (time.time() if now is None else now) + wait
        return QuotaExhausted(f"{where}: GPU quota spent ({said}){when}", request_id=request_id,
                              retry_after=wait, resets_at=resets_at)
    if _BUSY.search(message) is not None:
        return QueueFull(f"{where}: the Space is busy ({said})", status=None, request_id=request_id,
                         retry_after=parse_wait(message))
    if _SERVER.match(message) is not None:  # the stream itself failed (an unknown event id, a stopping server)
        return ServerError(f"{where}: the event stream failed ({said})", status=None, request_id=request_id)
    heading = f"{title}: " if title and title.strip().lower() not in ("error", "") else ""
    return RejectedImage(f"{where}: the app refused it ({heading}{said})", status=None, request_id=request_id)


def _detail(body: bytes) -> str | None:
    """FastAPI's ``{"detail": "..."}`` (or a list of validation problems) as one line."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return None


def classify_http(status: int, headers: Mapping[str, str], body: bytes, *, where: str) -> APIError:
    """A non-2xx answer of a Gradio route: a full queue (503 "Queue is full") is back-pressure; the rest is
    decided as for any service (``protocols.classify``), with FastAPI's ``detail`` as the server's words."""
    detail = _detail(body)
    if status == 503 and detail is not None and _BUSY.search(detail) is not None:
        return QueueFull(f"HTTP 503 from {where}: {_short(detail)}", status=503,
                         retry_after=retry_hint(headers))
    if detail is not None:
        body = orjson.dumps({"error": detail})
    return classify(status, headers, body, url_host=where)
