"""A local aiohttp server that imitates the hosted HF inference services (protocol.md section 8).

The client, the pipeline and the benchmarks need a server that answers like the real ones and fails in the
documented ways on demand, without a token, a network or a GPU. Captions are derived from the pixels, so a test
can compute the expected caption with :func:`caption_for` and compare.

Each captioning request goes through the checks in the order a real proxy and model would apply them::

    auth -> body size -> rate limit -> cold start -> fault -> decode + caption -> latency -> answer

Latency is paid only by requests that reach the model (a fault, an undecodable image, or a caption). The proxy in
front of a real model answers 401, 413, 429 and 503 without waiting for it, and these answers stay fast here too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import itertools
import math
import random
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, Self

import orjson
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from batchcap.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_TOKEN",
    "REQUEST_LOG",
    "EmulatorSettings",
    "LogEntry",
    "RequestLog",
    "RouteKind",
    "RunningEmulator",
    "add_arguments",
    "caption_for",
    "make_app",
    "serve",
    "settings_from_args",
    "start_emulator",
]

DEFAULT_TOKEN = "hf_emulator_token"
DEFAULT_MODEL_ID = "Salesforce/blip-image-captioning-base"

RouteKind = Literal["serverless", "endpoint", "chat", "health", "hub", "stats", "other"]
LatencyDist = Literal["fixed", "uniform", "exponential"]

# ---------------------------------------------------------------------------------------------------------------
# Captions: a pure function of the bytes.

#: Named colours a caption can report; the nearest one (RGB distance) wins per pixel.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (139, 69, 19),
    "cyan": (0, 255, 255),
}
_NAMES = tuple(COLOURS)
_PALETTE = Image.new("P", (1, 1))
_PALETTE.putpalette([channel for i in range(256) for channel in list(COLOURS.values())[i % len(COLOURS)]])
_THUMB = (32, 32)
_CACHE_SIZE = 4096
# Measured here: a 50 KB 440x330 JPEG captions in ~0.6 ms uncached (draft mode decodes it at a reduced scale), a
# 640x480 PNG in ~3.5 ms, and a cache hit costs ~30 us (mostly SHA-256). Bodies this small are cheaper inline than a
# thread hop; bigger ones are hashed and decoded in a thread so the loop keeps serving.
_INLINE_DECODE_MAX_BYTES = 256 * 1024


class _CaptionCache:
    """A small thread-safe LRU keyed by SHA-256, so benchmarks that resend the same files skip Pillow.

    SHA-256 rather than a cheaper checksum: a collision would hand out a wrong caption, and with SHA-NI it is
    still twice as fast as BLAKE2b here.
    """

    __slots__ = ("_entries", "_lock", "hits", "misses")

    def __init__(self) -> None:
        self._entries: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> str | None:
        with self._lock:
            caption = self._entries.get(key)
            if caption is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return caption

    def put(self, key: bytes, caption: str) -> None:
        with self._lock:
            self._entries[key] = caption
            if len(self._entries) > _CACHE_SIZE:
                self._entries.popitem(last=False)


_CACHE = _CaptionCache()


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _describe(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "unknown").lower()
            width, height = image.size
            image.draft("RGB", (_THUMB[0] * 2, _THUMB[1] * 2))  # JPEG only: decode at a reduced scale
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            thumb = image.convert("RGBA" if has_alpha else "RGB").resize(_THUMB, Image.Resampling.BOX)
    except UnidentifiedImageError as exc:
        raise ValueError("cannot identify image file") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image file: {exc}") from exc
    if has_alpha:  # judge transparent pixels by what a viewer shows: white paper
        thumb = Image.alpha_composite(Image.new("RGBA", _THUMB, (255, 255, 255, 255)), thumb).convert("RGB")
    histogram = thumb.quantize(palette=_PALETTE, dither=Image.Dither.NONE).histogram()
    totals = [sum(histogram[i :: len(_NAMES)]) for i in range(len(_NAMES))]  # the palette repeats the colours
    best = max(range(len(_NAMES)), key=lambda i: (totals[i], -i))
    return f"a {width}x{height} {fmt} image, mostly {_NAMES[best]}"


def caption_for(data: bytes) -> str:
    """The emulator's caption for these image bytes, e.g. ``"a 64x48 png image, mostly red"``.

    Depends only on the bytes: format and size from the header, colour from the most common of :data:`COLOURS`
    in a 32x32 thumbnail (ties go to the colour listed first). Raises ``ValueError`` for bytes that are not a
    decodable image.
    """
    key = _digest(data)
    caption = _CACHE.get(key)
    if caption is None:
        caption = _describe(data)
        _CACHE.put(key, caption)
    return caption


async def _caption_async(data: bytes) -> str:
    """Caption inline when cheap (cache hit or small body), else in a thread so the loop keeps serving."""
    if len(data) <= _INLINE_DECODE_MAX_BYTES:
        return caption_for(data)
    return await asyncio.to_thread(caption_for, data)


# ---------------------------------------------------------------------------------------------------------------
# Settings.


@dataclass(frozen=True, slots=True)
class EmulatorSettings:
    """How the emulator behaves. The defaults answer every request at once and correctly.

    ``latency`` is the mean delay of a request that reaches the model; ``latency_dist`` its shape (``fixed``,
    ``uniform`` on [0, 2*latency], ``exponential``); ``latency_jitter`` adds uniform noise in [-j, +j]. ``burst``
    defaults to ``max(1, int(rate))``. ``cold_start`` seconds are counted from the first request admitted to a
    model route: refused requests (401, 413, 429) and health probes do not wake the model.
    """

    auth: Literal["public", "protected"] = "public"
    tokens: tuple[str, ...] = field(default=(DEFAULT_TOKEN,), repr=False)
    rate: float | None = None
    burst: int | None = None
    retry_after: bool = False
    cold_start: float = 0.0
    cold_start_status: int = 503
    latency: float = 0.0
    latency_jitter: float = 0.0
    latency_dist: LatencyDist = "fixed"
    fail_rate: float = 0.0
    seed: int = 0
    max_body_bytes: int = 20 * 1024 * 1024
    model_id: str = DEFAULT_MODEL_ID
    name: str = "emulator"

    def __post_init__(self) -> None:
        def bad(what: str, flag: str) -> ConfigError:
            return ConfigError(f"emulator {what}; pass a valid {flag} or change EmulatorSettings")

        if self.auth not in ("public", "protected"):
            raise bad(f"auth must be 'public' or 'protected' (got {self.auth!r})", "--auth")
        if self.auth == "protected" and not any(self.tokens):
            raise bad("auth='protected' needs at least one token", "--token-file")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise bad(f"rate must be a finite number > 0, or None for unlimited (got {self.rate})", "--rate")
        if self.burst is not None and self.burst < 1:
            raise bad(f"burst must be >= 1 (got {self.burst})", "--burst")
        for name in ("cold_start", "latency", "latency_jitter"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise bad(f"{name} must be a finite number >= 0 (got {value})", "--" + name.replace("_", "-"))
        if self.cold_start_status not in (502, 503):
            raise bad(
                f"cold_start_status must be 502 or 503 (got {self.cold_start_status})", "--cold-start-status"
            )
        if self.latency_dist not in ("fixed", "uniform", "exponential"):
            raise bad(
                f"latency_dist must be fixed, uniform or exponential (got {self.latency_dist!r})",
                "--latency-dist",
            )
        if not 0.0 <= self.fail_rate <= 1.0:
            raise bad(f"fail_rate must be within [0, 1] (got {self.fail_rate})", "--fail-rate")
        if self.max_body_bytes < 1:
            raise bad(f"max_body_bytes must be >= 1 (got {self.max_body_bytes})", "max_body_bytes")

    @property
    def effective_burst(self) -> int:
        """The bucket size in force: the explicit ``burst`` or ``max(1, int(rate))``."""
        if self.burst is not None:
            return self.burst
        return max(1, int(self.rate or 1))

    def describe(self) -> str:
        """One line for logs and the ``serve`` banner; never shows a token."""
        rate = "unlimited" if self.rate is None else f"{self.rate:g}/s burst={self.effective_burst}"
        jitter = f"±{self.latency_jitter:g}" if self.latency_jitter else ""
        return (
            f"auth={self.auth}, rate={rate}, retry_after={'on' if self.retry_after else 'off'}, "
            f"cold_start={self.cold_start:g}s/{self.cold_start_status}, "
            f"latency={self.latency:g}s{jitter} {self.latency_dist}, fail_rate={self.fail_rate:g}, seed={self.seed}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Request log and the pure rate arithmetic.


class LogEntry(NamedTuple):
    """One answered request. ``t`` is the monotonic time it was admitted (or refused). No token is kept."""

    t: float
    kind: RouteKind
    status: int
    nbytes: int
    auth_present: bool


class RequestLog:
    """What the emulator answered: the last ``maxlen`` entries, plus exact counters over its whole life."""

    __slots__ = ("_by_kind", "_by_status", "bytes_received", "entries", "total")

    def __init__(self, maxlen: int = 1_000_000) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=maxlen)
        self._by_status: Counter[int] = Counter()
        self._by_kind: Counter[str] = Counter()
        self.total = 0
        self.bytes_received = 0

    def record(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        self._by_status[entry.status] += 1
        self._by_kind[entry.kind] += 1
        self.total += 1
        self.bytes_received += entry.nbytes

    def count(self, status: int | None = None) -> int:
        """Requests answered in total, or with this status."""
        return self.total if status is None else self._by_status[status]

    def max_per_second(self, window: float = 1.0) -> int:
        """Most requests answered 200 whose admission times fall within any half-open window of this length."""
        times = sorted(entry.t for entry in self.entries if entry.status == 200)
        best = start = 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def snapshot(self) -> dict[str, object]:
        """Counters as plain JSON-ready data (the ``GET /stats`` body)."""
        return {
            "total": self.total,
            "bytes_received": self.bytes_received,
            "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
            "by_kind": dict(sorted(self._by_kind.items())),
            "max_per_second": self.max_per_second(),
        }

    def __repr__(self) -> str:
        return f"<RequestLog total={self.total} ok={self.count(200)} kept={len(self.entries)}>"


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


# ---------------------------------------------------------------------------------------------------------------
# The application.

REQUEST_LOG = web.AppKey("request_log", RequestLog)


@dataclass(slots=True)
class _State:
    """Mutable state lives in the app, so two emulators in one process never share a bucket or a clock."""

    settings: EmulatorSettings
    bucket: _TokenBucket | None
    rng: random.Random
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    loaded_at: float | None = None  # set by the first admitted model request

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

    rid: str
    t: float
    kind: RouteKind = "other"
    nbytes: int = 0


@dataclass(frozen=True, slots=True)
class _Payload:
    """What a route extracted from the body: image bytes or a ready error answer, plus a legacy wait hint."""

    image: bytes | None = None
    error: web.Response | None = None
    wait_for_model: bool = False


_STATE = web.AppKey("emulator_state", _State)
_CTX = web.RequestKey("emulator_ctx", _Ctx)
_Parse = Callable[[web.Request, bytes], _Payload]
_Answer = Callable[[web.Request, str], web.Response]

_TOO_LARGE = "Failed to buffer the request body: length limit exceeded"
_NOT_IMAGE = "cannot identify image file"
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
#: Media types the Inference Toolkit container accepts (protocol.md section 3), matched without parameters.
ENDPOINT_CONTENT_TYPES = (
    "application/json",
    "application/json; charset=UTF-8",
    "text/csv",
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/jpg",
    "image/tiff",
    "image/bmp",
    "image/gif",
    "image/webp",
    "image/x-image",
    "audio/x-flac",
    "audio/mpeg",
    "audio/wave",
    "audio/ogg",
    "audio/x-audio",
)
_ENDPOINT_MEDIA = frozenset(ct.split(";")[0].lower() for ct in ENDPOINT_CONTENT_TYPES)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _media_type(request: web.Request) -> str | None:
    raw = request.headers.get("Content-Type")
    return None if raw is None else raw.split(";")[0].strip().lower()


def _b64_image(value: object) -> bytes | None:
    """Decode a base64 string (a ``data:`` prefix is tolerated); ``None`` if it is not one."""
    if not isinstance(value, str):
        return None
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_serverless(request: web.Request, body: bytes) -> _Payload:
    """Raw bytes with any Content-Type, or ``{"inputs": b64, "parameters": ...}`` when labelled and shaped as JSON."""
    if _media_type(request) != "application/json" or body.lstrip()[:1] != b"{":
        return _Payload(image=body)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _Payload(image=body)  # the documented JS snippet labels raw image bytes as JSON
    options = payload.get("options") if isinstance(payload, dict) else None
    wait = isinstance(options, dict) and bool(options.get("wait_for_model"))
    image = _b64_image(payload.get("inputs")) if isinstance(payload, dict) else None
    if image is None:
        error = _json(400, {"error": "Body needs an 'inputs' key holding the base64-encoded image"})
        return _Payload(error=error, wait_for_model=wait)
    return _Payload(image=image, wait_for_model=wait)


def _parse_endpoint(request: web.Request, body: bytes) -> _Payload:
    """The Inference Toolkit's rules: a whitelisted Content-Type, then image bytes or JSON with ``inputs``."""
    media = _media_type(request)
    if media not in _ENDPOINT_MEDIA:
        raw = request.headers.get("Content-Type")
        message = f'Content type "{raw}" not supported. Supported content types are: {", ".join(ENDPOINT_CONTENT_TYPES)}'
        return _Payload(error=_json(400, {"error": message}))
    if media == "application/json":
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _Payload(error=_json(400, {"error": str(exc)}))
        if not isinstance(payload, dict) or ("inputs" not in payload and "instances" not in payload):
            return _Payload(error=_json(400, {"error": "Body needs to provide a inputs key"}))
        image = _b64_image(payload.get("inputs", payload.get("instances")))
        return (
            _Payload(image=image) if image is not None else _Payload(error=_json(400, {"error": _NOT_IMAGE}))
        )
    if not media.startswith("image/"):
        return _Payload(error=_json(400, {"error": _NOT_IMAGE}))
    return _Payload(image=body)


def _tgi_error(status: int, message: str) -> web.Response:
    return _json(status, {"error": message, "error_type": "validation"})


def _invalid(reason: str) -> _Payload:
    return _Payload(error=_tgi_error(422, f"Input validation error: {reason}"))


def _parse_chat(request: web.Request, body: bytes) -> _Payload:
    """OpenAI chat body: the first ``image_url`` part must be a ``data:<mime>;base64,<b64>`` URI."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _Payload(error=_tgi_error(400, f"Failed to deserialize the JSON body: {exc}"))
    url = _first_image_url(payload)
    if url is None:
        return _invalid("no image_url content part in messages")
    header, _, data = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64")):
        return _invalid("the emulator only reads data:<mime>;base64,... image URLs")
    image = _b64_image(data)
    return _Payload(image=image) if image is not None else _invalid("image_url is not valid base64")


def _first_image_url(payload: object) -> str | None:
    messages = payload.get("messages") if isinstance(payload, dict) else None
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                return url if isinstance(url, str) else None
    return None


def _answer_pipeline(request: web.Request, caption: str) -> web.Response:
    return _json(200, [{"generated_text": caption}])


def _answer_chat(request: web.Request, caption: str) -> web.Response:
    ctx, settings = request[_CTX], request.app[_STATE].settings
    completion_tokens = len(caption.split())
    body = {
        "id": f"chatcmpl-{ctx.rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": settings.model_id,
        "system_fingerprint": f"batchcap-{settings.name}",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": caption},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1,
            "completion_tokens": completion_tokens,
            "total_tokens": 1 + completion_tokens,
        },
    }
    return _json(200, body)


def _auth_error(request: web.Request, settings: EmulatorSettings) -> web.Response | None:
    if settings.auth == "public":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    given = token.strip().encode()
    if scheme.lower() == "bearer" and any(hmac.compare_digest(given, ok.encode()) for ok in settings.tokens):
        return None
    return _json(401, {"error": "Invalid credentials in Authorization header"})


def _rate_limited(wait: float, settings: EmulatorSettings) -> web.Response:
    seconds = max(1, math.ceil(wait))
    burst = settings.effective_burst
    window = max(1, math.ceil(burst / (settings.rate or 1.0)))
    headers = {
        "RateLimit": f'"api";r=0;t={seconds}',
        "RateLimit-Policy": f'"token bucket";"api";q={burst};w={window}',
    }
    if settings.retry_after:
        headers["Retry-After"] = str(seconds)
    return _json(429, {"error": f"Too many requests: the emulator admits {settings.rate:g}/s"}, headers)


def _hold_for(request: web.Request, payload: _Payload) -> float:
    """How long the client asked us to hold a request while the model loads (0 = answer 503 at once)."""
    if payload.wait_for_model or request.headers.get("x-wait-for-model", "").strip().lower() in ("true", "1"):
        return math.inf
    try:
        return max(0.0, float(request.headers.get("X-Scale-Up-Timeout", "0")))
    except ValueError:
        return 0.0


async def _cold_error(request: web.Request, state: _State, payload: _Payload) -> web.Response | None:
    settings = state.settings
    now = time.monotonic()
    if state.loaded_at is None:
        state.loaded_at = now + settings.cold_start
    remaining = state.loaded_at - now
    if remaining <= 0:
        return None
    hold = _hold_for(request, payload)
    if hold > 0:
        await asyncio.sleep(min(hold, remaining))
        remaining = state.loaded_at - time.monotonic()
        if remaining <= 0:
            return None
    if settings.cold_start_status == 502:
        return web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html")
    model = request.match_info.get("model_id", settings.model_id)
    return _json(503, {"error": f"Model {model} is currently loading", "estimated_time": remaining})


async def _model_route(request: web.Request, kind: RouteKind, parse: _Parse, answer: _Answer) -> web.Response:
    """The check sequence from the module docstring, shared by every captioning route."""
    state, ctx = request.app[_STATE], request[_CTX]
    settings = state.settings
    ctx.kind = kind
    if (refused := _auth_error(request, settings)) is not None:
        return refused
    if (request.content_length or 0) > settings.max_body_bytes:
        return web.Response(status=413, text=_TOO_LARGE)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.Response(status=413, text=_TOO_LARGE)
    ctx.nbytes = len(body)
    ctx.t = now = time.monotonic()
    if state.bucket is not None and (wait := state.bucket.take(now)) > 0:
        return _rate_limited(wait, settings)
    payload = parse(request, body)
    if settings.cold_start > 0 and (loading := await _cold_error(request, state, payload)) is not None:
        return loading
    if settings.fail_rate and state.rng.random() < settings.fail_rate:
        response = _json(500, {"error": f"Emulated server error (fail_rate={settings.fail_rate:g})"})
    elif payload.error is not None:
        response = payload.error
    else:
        try:
            response = answer(request, await _caption_async(payload.image or b""))
        except ValueError as exc:
            if kind == "chat":
                response = _tgi_error(422, f"Input validation error: {exc}")
            else:
                response = _json(400, {"error": str(exc)})
    if (delay := state.delay()) > 0:
        await asyncio.sleep(delay)
    return response


async def _serverless(request: web.Request) -> web.StreamResponse:
    return await _model_route(request, "serverless", _parse_serverless, _answer_pipeline)


async def _endpoint(request: web.Request) -> web.StreamResponse:
    return await _model_route(request, "endpoint", _parse_endpoint, _answer_pipeline)


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _model_route(request, "chat", _parse_chat, _answer_chat)


async def _health(request: web.Request) -> web.StreamResponse:
    request[_CTX].kind = "health"
    refused = _auth_error(request, request.app[_STATE].settings)
    return refused if refused is not None else web.Response(text="Ok")


async def _hub_model(request: web.Request) -> web.StreamResponse:
    """Enough of the Hub's ``GET /api/models/{id}`` for huggingface_hub's model-id path (protocol.md section 6)."""
    request[_CTX].kind = "hub"
    model = request.match_info["model_id"]
    mapping = {"hf-inference": {"status": "live", "providerId": model, "task": "image-to-text"}}
    body = {
        "id": model,
        "pipeline_tag": "image-to-text",
        "tags": ["image-to-text"],
        "inferenceProviderMapping": mapping,
    }
    return _json(200, body)


async def _stats(request: web.Request) -> web.StreamResponse:
    request[_CTX].kind = "stats"
    state = request.app[_STATE]
    body = request.app[REQUEST_LOG].snapshot()
    body["name"] = state.settings.name
    body["settings"] = state.settings.describe()
    body["loaded"] = state.loaded_at is not None and time.monotonic() >= state.loaded_at
    body["caption_cache"] = {"hits": _CACHE.hits, "misses": _CACHE.misses}
    return _json(200, body)


@web.middleware
async def _track(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give every answer an ``x-request-id`` and log it (``/stats`` polls are not logged)."""
    state = request.app[_STATE]
    ctx = _Ctx(rid=f"emu-{next(state.ids)}", t=time.monotonic())
    request[_CTX] = ctx
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["x-request-id"] = ctx.rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["x-request-id"] = ctx.rid
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer
        raise
    finally:
        if ctx.kind != "stats":
            auth_present = "Authorization" in request.headers
            request.app[REQUEST_LOG].record(LogEntry(ctx.t, ctx.kind, status, ctx.nbytes, auth_present))


def make_app(settings: EmulatorSettings | None = None) -> web.Application:
    """A fresh emulator application; state (bucket, log, cold-start clock) lives in the app, not the module."""
    settings = settings or EmulatorSettings()
    bucket = None
    if settings.rate is not None:
        burst = settings.effective_burst
        bucket = _TokenBucket(rate=settings.rate, burst=burst, tokens=float(burst))
    app = web.Application(middlewares=[_track], client_max_size=settings.max_body_bytes)
    app[_STATE] = _State(settings=settings, bucket=bucket, rng=random.Random(settings.seed))
    app[REQUEST_LOG] = RequestLog()
    # Chat routes first: the serverless pattern below would otherwise swallow ".../v1/chat/completions".
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/hf-inference/models/{model_id:.+}/v1/chat/completions", _chat)
    app.router.add_post("/models/{model_id:.+}", _serverless)
    app.router.add_post("/hf-inference/models/{model_id:.+}", _serverless)
    app.router.add_post("/", _endpoint)
    app.router.add_post("/predict", _endpoint)
    app.router.add_get("/", _health)
    app.router.add_get("/health", _health)
    app.router.add_get("/api/models/{model_id:.+}", _hub_model)
    app.router.add_get("/stats", _stats)
    return app


class RunningEmulator:
    """An emulator bound to a real socket; ``async with`` or :meth:`close` stops it."""

    def __init__(self, runner: web.AppRunner, url: str, settings: EmulatorSettings) -> None:
        self._runner = runner
        self.url = url
        self.settings = settings

    @property
    def app(self) -> web.Application:
        return self._runner.app

    @property
    def log(self) -> RequestLog:
        return self.app[REQUEST_LOG]

    async def close(self) -> None:
        """Stop listening and cancel in-flight requests; safe to call twice."""
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RunningEmulator {self.url} {self.log!r}>"


async def start_emulator(
    settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Serve :func:`make_app` on ``host:port`` (port 0 picks a free one; ``.url`` has the real one)."""
    settings = settings or EmulatorSettings()
    # No access log: it would cost more than the request itself. A short shutdown keeps test teardown fast.
    runner = web.AppRunner(make_app(settings), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound_port = int(address[1])
            break
    shown_host = f"[{host}]" if ":" in host else host
    return RunningEmulator(runner, f"http://{shown_host}:{bound_port}", settings)


# ---------------------------------------------------------------------------------------------------------------
# Command line (wired into `batchcap serve` by cli.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Emulator options; the token comes from a file so it never shows in ``ps`` or shell history."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    add("--port", type=int, default=8080, help="TCP port, 0 for any free one (default: %(default)s)")
    add(
        "--auth",
        choices=("public", "protected"),
        default="public",
        help="require a bearer token (default: %(default)s)",
    )
    add(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"file with the token(s) accepted in protected mode, one per line (default: the test token {DEFAULT_TOKEN})",
    )
    add(
        "--rate",
        type=float,
        metavar="R",
        help="requests/s admitted across all model routes (default: unlimited)",
    )
    add("--burst", type=int, metavar="B", help="token-bucket size (default: max(1, int(rate)))")
    add(
        "--retry-after",
        action="store_true",
        help="send Retry-After on 429, unlike real inference (default: off)",
    )
    add(
        "--cold-start",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds the model 'loads' after the first admitted request (default: %(default)s)",
    )
    add(
        "--cold-start-status",
        type=int,
        choices=(502, 503),
        default=503,
        help="status while loading: 503 JSON (serverless) or 502 HTML (scaled-to-zero endpoint) (default: %(default)s)",
    )
    add(
        "--latency",
        type=float,
        default=0.0,
        metavar="S",
        help="mean seconds per answer (default: %(default)s)",
    )
    add(
        "--latency-jitter",
        type=float,
        default=0.0,
        metavar="S",
        help="uniform noise in [-S, +S] added to each delay (default: %(default)s)",
    )
    add(
        "--latency-dist",
        choices=("fixed", "uniform", "exponential"),
        default="fixed",
        help="shape of the delay around --latency (default: %(default)s)",
    )
    add(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction answered 500 (default: %(default)s)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed for failures and latency (default: %(default)s)",
    )


def _read_tokens(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"cannot read --token-file {path}: {exc.strerror}; write one token per line"
        ) from exc
    tokens = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not tokens:
        raise ConfigError(f"--token-file {path} holds no token; write one token per line")
    return tokens


def settings_from_args(ns: argparse.Namespace) -> EmulatorSettings:
    """Build settings from :func:`add_arguments` options; raises ``ConfigError`` with a hint when one is invalid."""
    tokens = _read_tokens(ns.token_file) if ns.token_file is not None else (DEFAULT_TOKEN,)
    return EmulatorSettings(
        auth=ns.auth,
        tokens=tokens,
        rate=ns.rate,
        burst=ns.burst,
        retry_after=ns.retry_after,
        cold_start=ns.cold_start,
        cold_start_status=ns.cold_start_status,
        latency=ns.latency,
        latency_jitter=ns.latency_jitter,
        latency_dist=ns.latency_dist,
        fail_rate=ns.fail_rate,
        seed=ns.seed,
    )


async def _serve_until_signal(settings: EmulatorSettings, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers on Windows loops
            loop.add_signal_handler(sig, stop.set)
    try:
        server = await start_emulator(settings, host, port)
    except OSError as exc:
        print(
            f"batchcap emulator: cannot listen on {host}:{port}: {exc.strerror}; pick another --port",
            file=sys.stderr,
        )
        return 1
    async with server:
        print(f"batchcap emulator listening on {server.url} ({settings.describe()})", flush=True)
        await stop.wait()
    return 0


def serve(settings: EmulatorSettings, host: str = "127.0.0.1", port: int = 8080) -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit code (0 after a signal, 1 if it cannot bind)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop  # optional: ~10% less server CPU per request measured here

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve_until_signal(settings, host, port))
    except KeyboardInterrupt:  # a Ctrl-C that landed before the handlers were installed
        return 0
