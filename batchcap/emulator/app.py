"""The emulator's aiohttp application: its routes per profile, and the order in which a request is checked.

Each captioning request goes through the checks in the order a real proxy and model would apply them::

    auth -> body size -> rate limit -> credits (402) -> parse -> cold start -> proxy faults (502/504, hang)
         -> decode + caption -> model time (queue for a replica slot, then latency) -> Accept (endpoint)
         -> network faults on the answer (reset, cut body, garbled body)

Model time is paid only by requests that reach the model (a fault, an undecodable image, or a caption; on the
``endpoint`` profile a body the container cannot deserialise is refused before it). The proxy in front of a real
model answers 401, 402, 413, 429, 502/504 and 503 without waiting for it, and these answers stay fast here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from batchcap.emulator import faults, toolkit
from batchcap.emulator.answers import invalid_json_for, json_value, text_answer
from batchcap.emulator.bodies import (
    _Answer,
    _answer_chat,
    _answer_pipeline,
    _json,
    _Parse,
    _parse_chat,
    _parse_endpoint,
    _parse_serverless,
    _Payload,
    _tgi_error,
    model_entry,
    models_list,
)
from batchcap.emulator.capacity import ModelPool
from batchcap.emulator.captions import _CACHE, _decode_async
from batchcap.emulator.log import LogEntry, RequestLog, RouteKind
from batchcap.emulator.proxy import (
    _TOO_LARGE,
    _auth_error,
    _cold_error,
    _rate_limited,
    _unknown_model,
    window_headers,
    window_refused,
)
from batchcap.emulator.settings import EmulatorSettings
from batchcap.emulator.spaceapp import add_space_routes
from batchcap.emulator.state import _CTX, _STATE, REQUEST_LOG, _Ctx, _FixedWindow, _State, _TokenBucket

__all__ = ["make_app", "reconfigure"]

_JSON_ASKED_MAX = 1_000_000  # (image, prompt) pairs remembered for invalid_json_rate; then it starts over


async def _admit(request: web.Request, kind: RouteKind) -> tuple[bytes, web.Response | None]:
    """The proxy's part: auth, body size, rate limit and credits. Returns the body, or the refusal."""
    state, ctx = request.app[_STATE], request[_CTX]
    settings = state.settings
    if (refused := _auth_error(request, settings)) is not None:
        return b"", refused
    if (unknown := _unknown_model(request, settings)) is not None:
        return b"", unknown
    limit = settings.body_limit(kind)
    if (request.content_length or 0) > limit:
        return b"", web.Response(status=413, text=_TOO_LARGE)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return b"", web.Response(status=413, text=_TOO_LARGE)
    if len(body) > limit:
        return b"", web.Response(status=413, text=_TOO_LARGE)
    ctx.nbytes = len(body)
    ctx.t = now = time.monotonic()
    if state.bucket is not None and (wait := state.bucket.take(now)) > 0:
        return body, _rate_limited(wait, settings)
    if state.window is not None:
        admitted, remaining, reset = state.window.take(time.time())
        if not admitted:
            return body, window_refused(settings, reset)
        ctx.headers = window_headers(settings, remaining, reset, refused=False) or None
    if settings.credits is not None:
        if state.credits_used >= settings.credits:
            return body, _json(402, {"error": faults.CREDITS_EXHAUSTED})
        state.credits_used += 1
    return body, None


async def _infer(request: web.Request, kind: RouteKind, payload: _Payload, answer: _Answer) -> web.Response:
    """Decode and caption (or fail the way the route's server fails); no model time yet."""
    state, ctx = request.app[_STATE], request[_CTX]
    settings = state.settings
    strict = settings.profile == "endpoint"
    if ctx.fault == "error" and not strict:
        return _json(500, {"error": f"Emulated server error (fail_rate={settings.fail_rate:g})"})
    if payload.error is not None:
        return payload.error
    try:
        decoded = await _decode_async(payload.image or b"")
    except ValueError as exc:
        if strict:
            return toolkit.handler_error(toolkit.not_an_image(ctx.n))
        if kind == "chat":
            return _tgi_error(422, f"Input validation error: {exc}")
        return _json(400, {"error": str(exc)})
    ctx.decoded = decoded
    if ctx.fault == "error":  # strict: the handler raised, and the container turns that into a 400
        return toolkit.handler_error(toolkit.oom_error(ctx.n, decoded.width, decoded.height))
    if kind == "chat":
        ctx.prompt, ctx.schema = payload.prompt, payload.schema
        return answer(request, _chat_text(state, decoded.caption, payload))
    return answer(request, decoded.caption)


def _chat_text(state: _State, caption: str, payload: _Payload) -> str:
    """The chat answer to this prompt (``answers``): text, or JSON when a schema was asked, the first answer of a
    seeded share of (image, prompt) pairs invalid (``invalid_json_rate``)."""
    if payload.schema is None:
        return text_answer(caption, payload.prompt)
    rate = state.settings.invalid_json_rate
    if rate > 0:
        h = hashlib.sha256(f"{state.settings.seed}\x00{payload.prompt or ''}\x00".encode())
        h.update(payload.image or b"")
        pair = h.digest()
        if pair not in state.json_asked:
            if len(state.json_asked) >= _JSON_ASKED_MAX:
                state.json_asked.clear()
            state.json_asked.add(pair)
            if int.from_bytes(pair[:8], "big") / 2**64 < rate:
                return invalid_json_for(caption, payload.prompt, payload.schema)
    return orjson.dumps(json_value(caption, payload.prompt, payload.schema)).decode()


async def _model_route(request: web.Request, kind: RouteKind, parse: _Parse, answer: _Answer) -> web.StreamResponse:
    """The check sequence from the module docstring, shared by every captioning route."""
    state, ctx = request.app[_STATE], request[_CTX]
    settings = state.settings
    strict = settings.profile == "endpoint"
    ctx.kind = kind
    body, refused = await _admit(request, kind)
    if refused is not None:
        return refused
    payload = toolkit.parse_strict(request, body, ctx.n) if strict else parse(request, body)
    if kind == "chat":  # what the bill counts (the answer reads them back)
        ctx.prompt, ctx.max_tokens, ctx.model = payload.prompt, payload.max_tokens, payload.model
        ctx.image = hashlib.sha256(payload.image).hexdigest()[:16] if payload.image else ""
    if settings.cold_start > 0 and (loading := await _cold_error(request, state, payload)) is not None:
        return loading
    ctx.fault = faults.draw(state.rng, settings)
    if ctx.fault == "proxy":
        return faults.gateway_error(state.rng)
    if ctx.fault == "hang":
        await faults.hang(request)
        return web.Response(status=504, text="")  # nobody is listening any more
    if strict and payload.error is not None:  # refused while deserialising, before the handler runs
        return payload.error
    response = await _infer(request, kind, payload, answer)
    if strict and response.status == 400 and ctx.decoded is None:
        return response  # the image did not open: refused before inference too
    delay = state.delay()
    if state.pool is not None:
        ctx.queued = await state.pool.run(delay)
    elif delay > 0:
        await asyncio.sleep(delay)
    if strict and response.status == 200:
        accept = request.headers.get("Accept")
        if accept is not None and (wrong := toolkit.accept_error(accept)) is not None:
            return wrong
    if ctx.fault == "reset":
        faults.reset(request)
        return response
    if ctx.fault == "truncated":
        return await faults.truncated(request, response)
    if ctx.fault == "garbled":
        return faults.garbled(response)
    return response


async def _serverless(request: web.Request) -> web.StreamResponse:
    return await _model_route(request, "serverless", _parse_serverless, _answer_pipeline)


async def _legacy(request: web.Request) -> web.StreamResponse:
    """``/models/<id>`` on the retired api-inference host: 410 when ``legacy_gone``, else the serverless route."""
    if request.app[_STATE].settings.legacy_gone:
        request[_CTX].kind = "serverless"
        return web.Response(status=410, text=faults.LEGACY_GONE)
    return await _serverless(request)


async def _endpoint(request: web.Request) -> web.StreamResponse:
    return await _model_route(request, "endpoint", _parse_endpoint, _answer_pipeline)


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _model_route(request, "chat", _parse_chat, _answer_chat)


async def _health(request: web.Request) -> web.StreamResponse:
    request[_CTX].kind = "health"
    refused = _auth_error(request, request.app[_STATE].settings)
    return refused if refused is not None else web.Response(text="Ok")


async def _tgi_health(request: web.Request) -> web.StreamResponse:
    request[_CTX].kind = "health"
    return web.Response(status=200)


async def _tgi_info(request: web.Request) -> web.StreamResponse:
    """TGI's ``GET /info`` (router/src/lib.rs ``Info``), enough to tell a TGI server from others."""
    request[_CTX].kind = "health"
    settings = request.app[_STATE].settings
    return _json(200, {"model_id": settings.model_id, "model_sha": None, "model_pipeline_tag": "image-text-to-text",
                       "max_concurrent_requests": 128, "max_input_tokens": 8191, "max_total_tokens": 8192,
                       "router": "text-generation-router", "version": "3.3.6", "sha": None})


async def _metrics(request: web.Request) -> web.StreamResponse:
    request[_CTX].kind = "health"
    log = request.app[REQUEST_LOG]
    return web.Response(text=toolkit.metrics_text(log.count(), log.count(200)), content_type="text/plain")


async def _hub_model(request: web.Request) -> web.StreamResponse:
    """Enough of the Hub's ``GET /api/models/{id}`` for huggingface_hub's model-id path (protocol.md section 6)."""
    request[_CTX].kind = "hub"
    model = request.match_info["model_id"]
    served = model in request.app[_STATE].settings.models
    mapping = {"hf-inference": {"status": "live", "providerId": model, "task": "image-to-text"}} if served else {}
    body = {
        "id": model,
        "pipeline_tag": "image-to-text",
        "tags": ["image-to-text"],
        "inferenceProviderMapping": mapping,
    }
    return _json(200, body)


async def _models(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models`` (and ``/v1/models/{id}``): the router's list with each provider's pricing."""
    request[_CTX].kind = "hub"
    settings = request.app[_STATE].settings
    wanted = request.match_info.get("model_id")
    if wanted is None:
        return _json(200, models_list(settings))
    if wanted == settings.model_id:  # the router keys its list by the bare id (no :provider suffix)
        return _json(200, model_entry(settings))
    return _json(404, {"error": f"Model {wanted} not found"})


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
    """Give every answer an ``x-request-id`` (not on the endpoint port) and log it (``/stats`` polls are not).

    On the endpoint port a missing route is Starlette's plain ``Not Found`` (and ``Method Not Allowed``).
    """
    state = request.app[_STATE]
    n = next(state.ids)
    ctx = _Ctx(n=n, rid=f"emu-{n}", t=time.monotonic())
    request[_CTX] = ctx
    tag = state.settings.profile != "endpoint"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if tag and not response.prepared:
            response.headers["x-request-id"] = ctx.rid
        if ctx.headers and not response.prepared:
            response.headers.update(ctx.headers)
        return response
    except web.HTTPException as exc:
        status = exc.status
        if not tag and status in (404, 405):
            return web.Response(status=status, text="Not Found" if status == 404 else "Method Not Allowed")
        if tag:
            exc.headers["x-request-id"] = ctx.rid
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer
        raise
    finally:
        if ctx.kind != "stats":
            auth_present = "Authorization" in request.headers
            entry = LogEntry(ctx.t, ctx.kind, status, ctx.nbytes, auth_present, ctx.decoded, ctx.fault, ctx.queued,
                             ctx.usage, ctx.provider, ctx.cost, ctx.image, ctx.prompt, ctx.schema)
            request.app[REQUEST_LOG].record(entry)


def _add_routes(app: web.Application, settings: EmulatorSettings) -> None:
    """The routes of the chosen profile (see :class:`EmulatorSettings`)."""
    add_post, add_get = app.router.add_post, app.router.add_get
    profile = settings.profile
    if profile in ("all", "serverless", "tgi"):
        add_post("/v1/chat/completions", _chat)
        add_get("/v1/models", _models)
        add_get("/v1/models/{model_id:.+}", _models)
    if profile in ("all", "serverless"):
        # Chat first: the serverless pattern below would otherwise swallow ".../v1/chat/completions".
        add_post("/hf-inference/models/{model_id:.+}/v1/chat/completions", _chat)
        add_post("/models/{model_id:.+}", _legacy)
        add_post("/hf-inference/models/{model_id:.+}", _serverless)
    if profile in ("all", "endpoint"):
        add_post("/", _endpoint)
        add_post("/predict", _endpoint)
        add_get("/", _health)
    if profile in ("all", "endpoint"):
        add_get("/health", _health)
    elif profile == "tgi":
        add_get("/health", _tgi_health)
        add_get("/info", _tgi_info)
    if profile != "serverless":
        add_get("/metrics", _metrics)
    if profile in ("all", "serverless"):
        add_get("/api/models/{model_id:.+}", _hub_model)
    if profile in ("all", "space"):
        add_space_routes(app, settings)
    if profile != "endpoint":
        add_get("/stats", _stats)


async def _close_pool(app: web.Application) -> None:
    pool = app[_STATE].pool
    if pool is not None:
        await pool.close()


def reconfigure(app: web.Application, settings: EmulatorSettings) -> None:
    """Behave as ``settings`` say from the next request on (a soak's fault schedule): faults, latency, rate and
    fixed-window limits, auth. The routes and the model's capacity stay as the app was made."""
    state = app[_STATE]
    state.settings = settings
    state.bucket = None
    if settings.rate is not None:
        burst = settings.effective_burst
        state.bucket = _TokenBucket(rate=settings.rate, burst=burst, tokens=float(burst))
    state.window = None
    if settings.window_quota is not None:
        state.window = _FixedWindow(settings.window_quota, settings.window_seconds)


def make_app(settings: EmulatorSettings | None = None) -> web.Application:
    """A fresh emulator application; state (bucket, log, cold-start clock) lives in the app, not the module."""
    settings = settings or EmulatorSettings()
    limit = max(settings.body_limit(kind) for kind in ("serverless", "endpoint", "chat"))
    app = web.Application(middlewares=[_track], client_max_size=limit)
    capacity = settings.capacity
    pool = ModelPool(capacity) if capacity is not None else None
    app[_STATE] = _State(settings=settings, bucket=None, rng=random.Random(settings.seed), pool=pool)
    reconfigure(app, settings)
    app[REQUEST_LOG] = RequestLog()
    app.on_cleanup.append(_close_pool)
    _add_routes(app, settings)
    return app
