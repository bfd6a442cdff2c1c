"""The refusals a real proxy gives before the model sees a request: 401, 413, 429, and 502/503 while loading.

Kept apart from the model's own answers because they never pay its latency: they come back at once (or after the
hold a client asked for while the model loads), with the headers clients back off by (``RateLimit``, optionally
``Retry-After``, ``estimated_time``).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time

from aiohttp import web

from batchcap.emulator.bodies import _json, _Payload
from batchcap.emulator.settings import EmulatorSettings
from batchcap.emulator.state import _State

_TOO_LARGE = "Failed to buffer the request body: length limit exceeded"
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


def _auth_error(request: web.Request, settings: EmulatorSettings) -> web.Response | None:
    if settings.auth == "public":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    given = token.strip().encode()
    if scheme.lower() == "bearer" and any(hmac.compare_digest(given, ok.encode()) for ok in settings.tokens):
        return None
    return _json(401, {"error": "Invalid credentials in Authorization header"})


def _unknown_model(request: web.Request, settings: EmulatorSettings) -> web.Response | None:
    """The router's 404 for a model id it does not serve: plain ``Not Found`` (protocol.md sections 1.1, 2.1)."""
    model = request.match_info.get("model_id")
    if model is None or model in settings.models:
        return None
    return web.Response(status=404, text="Not Found", headers={"x-inference-provider": "hf-inference"})


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
    # min(): on a long-running host, float rounding of (now + S) - now can exceed S by an ulp
    estimate = min(remaining, settings.cold_start)
    return _json(503, {"error": f"Model {model} is currently loading", "estimated_time": estimate})
