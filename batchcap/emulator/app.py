"""The emulator's aiohttp application: its routes, and the order in which a captioning request is checked.

Each captioning request goes through the checks in the order a real proxy and model would apply them::

    auth -> body size -> rate limit -> cold start -> fault -> decode + caption -> latency -> answer

Latency is paid only by requests that reach the model (a fault, an undecodable image, or a caption). The proxy in
front of a real model answers 401, 413, 429 and 503 without waiting for it, and these answers stay fast here too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .captions import _CACHE, _caption_async
from .log import LogEntry, RequestLog, RouteKind
from .proxy import _TOO_LARGE, _auth_error, _cold_error, _rate_limited
from .settings import EmulatorSettings
from .state import _CTX, _STATE, REQUEST_LOG, _Ctx, _State, _TokenBucket
from .wire import (
    _Answer,
    _answer_chat,
    _answer_pipeline,
    _json,
    _Parse,
    _parse_chat,
    _parse_endpoint,
    _parse_serverless,
    _tgi_error,
)

__all__ = ["make_app"]


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
