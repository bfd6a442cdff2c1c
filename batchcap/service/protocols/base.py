"""What every protocol adapter is, and the HTTP-status -> error class map they share.

Adapters are pure: they turn a LoadedImage into (headers, body) and a response body into a caption.
No sockets here, so every shape is testable with golden bytes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from batchcap.errors import (
    APIError,
    AuthError,
    BadResponse,
    CreditsExhausted,
    ModelLoading,
    RateLimited,
    RejectedImage,
    ServerError,
    WrongTarget,
)
from batchcap.flow.retry import retry_hint
from batchcap.flow.window import quota_from_headers
from batchcap.models import LoadedImage, Usage

__all__ = ["Adapter", "Built", "classify", "error_message", "parse_answer", "parse_reply"]

_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Built:
    """One request, ready for the wire."""

    headers: dict[str, str]
    body: bytes


class Adapter(Protocol):
    """One service shape. ``name`` is what ``--api`` selects."""

    @property
    def name(self) -> str: ...

    def build(self, image: LoadedImage, prompt: str | None = None) -> Built:
        """The request for ``image``; ``prompt`` (a task's, rendered for this image) replaces the adapter's own
        where the shape carries one (chat), and is ignored by shapes that send the image alone."""
        ...

    def parse(self, body: bytes) -> str: ...


def parse_reply(adapter: Adapter, body: bytes) -> tuple[str, str | None]:
    """``(caption, finish_reason)``: an adapter may define ``parse_reply``; one with only ``parse`` still works."""
    method = getattr(adapter, "parse_reply", None)
    if method is not None:
        text, reason = method(body)
        return text, reason
    return adapter.parse(body), None


def parse_answer(adapter: Adapter, body: bytes) -> tuple[str, str | None, Usage | None]:
    """``(caption, finish_reason, usage)`` in one parse: token-billed adapters define ``parse_answer``."""
    method = getattr(adapter, "parse_answer", None)
    if method is not None:
        text, reason, usage = method(body)
        return text, reason, usage
    text, reason = parse_reply(adapter, body)
    return text, reason, None


def error_message(headers: Mapping[str, str], body: bytes) -> str:
    """The server's own words, as huggingface_hub extracts them (protocol.md 2.1), shortened."""
    message = headers.get("X-Error-Message") or headers.get("x-error-message") or ""
    if not message and body:
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, str):
                message = err
            elif isinstance(err, list):
                message = "; ".join(str(e) for e in err)
            elif isinstance(err, dict):  # vLLM >= 0.10.1 / OpenAI
                message = str(err.get("message") or err)
            elif isinstance(data.get("message"), str):  # vLLM flat
                message = data["message"]
            elif isinstance(data.get("errors"), list):
                message = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in data["errors"])
            if isinstance(data.get("error_description"), str):
                message = f"{message}: {data['error_description']}" if message else data["error_description"]
        elif data is None:
            ctype = headers.get("Content-Type", headers.get("content-type", ""))
            if "html" not in ctype.lower() and body.lstrip()[:1] != b"<":
                message = body[:_MAX_MESSAGE].decode("utf-8", "replace").strip()
    message = " ".join(message.split())
    return message[:_MAX_MESSAGE] + ("..." if len(message) > _MAX_MESSAGE else "")


def _estimated_time(body: bytes) -> float | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict):
        value = data.get("estimated_time")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


#: 4xx answers whose cause is the request's target or settings, never the image: the service refuses every image
#: alike, so they are ``WrongTarget`` (the run stops at once) rather than a final ``RejectedImage`` per image.
#: Matched once, here at the boundary where answers become classes (protocol.md sections 4.4 and 9).
_NOT_ABOUT_THE_IMAGE = re.compile(
    r"not supported by any provider"  # the HF router: no provider serves this model
    r"|No connected db"  # a LiteLLM proxy with the wrong key (its key store is not reachable)
    r"|(model|deployment) .{0,80}(does not exist|not found|is not served)"
    r"|(invalid|unknown|unsupported) model"
    r"|(invalid|incorrect|missing) api[ _-]?key"
    r"|Content type .{0,40} not supported",  # the Endpoint container: the request's Content-Type
    re.IGNORECASE,
)


def classify(status: int, headers: Mapping[str, str], body: bytes, *, url_host: str) -> APIError:
    """Map a non-2xx answer to the error class that decides what happens next (with its quota headers)."""
    error = _classify(status, headers, body, url_host=url_host)
    if "atelimit" in "".join(headers).lower() or "Retry-After" in headers or "retry-after" in headers:
        quota = error.quota = quota_from_headers(headers, now_wall=time.time())
        if (isinstance(error, RateLimited) and error.retry_after is None and quota is not None
                and quota.remaining is not None and quota.remaining <= 0 and quota.reset):
            error.retry_after = quota.reset  # x-ratelimit-reset-requests: the wait, said another way
    return error


def _classify(status: int, headers: Mapping[str, str], body: bytes, *, url_host: str) -> APIError:
    request_id = headers.get("x-request-id") or headers.get("X-Request-Id") or headers.get("X-Amzn-Trace-Id")
    said = error_message(headers, body)
    detail = f"HTTP {status} from {url_host}" + (f": {said}" if said else "")
    if status in (401, 403):
        return AuthError(detail, status=status, request_id=request_id)
    if status == 402:
        return CreditsExhausted(detail, status=status, request_id=request_id)
    if status == 429:
        return RateLimited(detail, status=status, request_id=request_id, retry_after=retry_hint(headers))
    if status == 503 or (status == 502 and not said):
        # A loading model (serverless) or a replica waking from zero (Endpoint): waiting is the cure.
        return ModelLoading(detail, status=status, request_id=request_id, estimated_time=_estimated_time(body))
    if status in (404, 405, 410):
        return WrongTarget(detail, status=status, request_id=request_id)
    if status == 408 or status >= 500:
        return ServerError(detail, status=status, request_id=request_id)
    if 300 <= status < 400:
        where = headers.get("Location", "?")
        return WrongTarget(f"HTTP {status} redirect from {url_host} to {where}: use the final URL", status=status)
    if 400 <= status < 500:
        if said and _NOT_ABOUT_THE_IMAGE.search(said):
            return WrongTarget(f"{detail} (not about the image: every image would get it)", status=status,
                               request_id=request_id)
        return RejectedImage(detail, status=status, request_id=request_id)
    return BadResponse(f"unexpected HTTP {status} from {url_host}", status=status, request_id=request_id)
