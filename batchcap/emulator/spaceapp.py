"""A Gradio 6.31 app as a Hugging Face Space serves it (issue 20): config, API info, upload, the queued call and
its event stream, a queue with a concurrency limit and a maximum size, and a ZeroGPU quota that runs out.

    GET  /config                              api_prefix "/gradio_api", protocol "sse_v3", dependencies...
    GET  /gradio_api/info                     named_endpoints: /caption(image, prompt) -> text
    POST /gradio_api/upload                   multipart "files" -> ["/tmp/gradio/<sha256>/image.jpg"]
    POST /gradio_api/call/<api>               {"data": [...]} -> {"event_id"}; 503 {"detail": "Queue is full..."}
    GET  /gradio_api/call/<api>/<event_id>    SSE, HTTP 200: heartbeat*, then complete [caption] or error
    POST /gradio_api/queue/join + GET /gradio_api/queue/data?session_hash=   what gradio_client uses (sse_v3)

As measured on the real server: an unknown api name is a bare 500; a body that is not JSON a 422; the event
stream is readable once (a second read only ever gets heartbeats), an unknown event id gets ``event: error``
with ``"404: Not Found"``; the queue counts calls waiting (not running), and a reader that goes away before its
call started takes it out of the queue. The app raises (``fail_rate``, an unreadable image, a wrong input
list) as Gradio shows it by default: ``{"error": null}``. ZeroGPU refuses over quota at once, with its text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from batchcap.emulator.captions import _decode_async
from batchcap.emulator.settings import EmulatorSettings
from batchcap.emulator.state import _CTX, _STATE

__all__ = ["SPACE", "SpaceState", "add_space_routes"]

PREFIX = "/gradio_api"
VERSION = "6.31.0"
DEFAULT_PROMPT = "Describe this image."
#: Uploads kept at most (oldest dropped): each call uses its own, so a run never needs more than its pool.
_MAX_UPLOADS = 4096
#: A second read of a consumed stream, or a queue/data stream, heartbeats for at most this long.
_MAX_STREAM_S = 3600.0
_SSE = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

#: The Image component's API schema as gradio 6.31 reports it (``gradio_client`` reads it to upload files).
_IMAGE_SCHEMA: dict[str, Any] = {
    "properties": {
        "path": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Path"},
        "url": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Url"},
        "size": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "Size"},
        "orig_name": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Orig Name"},
        "mime_type": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Mime Type"},
        "is_stream": {"default": False, "title": "Is Stream", "type": "boolean"},
        "meta": {"additionalProperties": True, "default": {"_type": "gradio.FileData"}, "title": "Meta",
                 "type": "object"},
    },
    "title": "ImageData",
    "type": "object",
}


@dataclass(slots=True)
class _Call:
    """One queued call: its inputs, whether it has started, and its outcome (an SSE event name and data)."""

    event_id: str
    api: str
    data: Any
    session: str | None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False
    cancelled: bool = False
    read: bool = False
    result: tuple[str, Any] = ("error", None)


@dataclass(slots=True)
class SpaceState:
    """The app's queue, uploads and quota. ``invocations`` counts the function's runs (what a Space bills)."""

    settings: EmulatorSettings
    slots: asyncio.Semaphore
    uploads: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    calls: dict[str, _Call] = field(default_factory=dict)
    consumed: deque[str] = field(default_factory=lambda: deque(maxlen=4096))
    sessions: dict[str, list[str]] = field(default_factory=dict)
    changed: dict[str, asyncio.Event] = field(default_factory=dict)
    waiting: int = 0
    running: int = 0
    invocations: int = 0
    queue_full: int = 0  #: calls refused with 503 "Queue is full"
    quota_refusals: int = 0
    quota_left: float | None = None
    quota_back_at: float | None = None
    inputs_seen: deque[Any] = field(default_factory=lambda: deque(maxlen=1024))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def create(cls, settings: EmulatorSettings) -> SpaceState:
        return cls(settings, asyncio.Semaphore(settings.space_concurrency), quota_left=settings.space_quota)


SPACE = web.AppKey("space_state", SpaceState)


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _authorized(request: web.Request) -> bool:
    """A private Space: the token in ``X-HF-Authorization`` (what gradio_client sends) or ``Authorization``."""
    settings = request.app[_STATE].settings
    if settings.auth == "public":
        return True
    for header in ("X-HF-Authorization", "Authorization"):
        scheme, _, token = request.headers.get(header, "").partition(" ")
        given = token.strip().encode()
        if scheme.lower() == "bearer" and any(hmac.compare_digest(given, ok.encode()) for ok in settings.tokens):
            return True
    return False


def _refuse(request: web.Request) -> web.Response | None:
    request[_CTX].kind = "space"
    if _authorized(request):
        return None
    return _json(401, {"detail": "Not authenticated: this Space is private (send a token that can read it)"})


# -- what the app says about itself ------------------------------------------------------------------------------


def config_body(settings: EmulatorSettings) -> dict[str, Any]:
    """``GET /config`` as gradio 6.31 writes it, trimmed to what clients read."""
    components: list[dict[str, Any]] = []
    dependencies: list[dict[str, Any]] = []
    for k, api in enumerate(settings.space_apis):
        image, prompt, out = 3 * k, 3 * k + 1, 3 * k + 2
        components += [
            {"id": image, "type": "image", "props": {"label": "image", "name": "image", "type": "pil"},
             "skip_api": False, "api_info": _IMAGE_SCHEMA, "component_class_id": "image"},
            {"id": prompt, "type": "textbox", "props": {"label": "prompt", "name": "textbox", "value": DEFAULT_PROMPT},
             "skip_api": False, "api_info": {"type": "string"}, "component_class_id": "textbox"},
            {"id": out, "type": "textbox", "props": {"label": "output", "name": "textbox"},
             "skip_api": False, "api_info": {"type": "string"}, "component_class_id": "textbox"},
        ]
        dependencies.append({
            "id": k, "targets": [[prompt, "submit"]], "inputs": [image, prompt], "outputs": [out],
            "backend_fn": True, "js": None, "queue": True, "api_name": api, "api_description": None,
            "batch": False, "max_batch_size": 4, "cancels": [], "types": {"generator": False, "cancel": False},
            "api_visibility": "public", "connection": "sse", "time_limit": None,
        })
    return {
        "version": VERSION, "api_prefix": PREFIX, "mode": "interface", "protocol": "sse_v3",
        "enable_queue": True, "connect_heartbeat": False, "analytics_enabled": False, "show_error": False,
        "max_file_size": settings.max_body_bytes, "space_id": None, "title": settings.name,
        "components": components, "dependencies": dependencies,
    }


def info_body(settings: EmulatorSettings) -> dict[str, Any]:
    """``GET /gradio_api/info``: one named endpoint per api, ``(image, prompt="...") -> text``."""
    named = {}
    for api in settings.space_apis:
        named[f"/{api}"] = {
            "parameters": [
                {"label": "image", "parameter_name": "image", "parameter_has_default": False,
                 "parameter_default": None, "type": _IMAGE_SCHEMA, "component": "Image",
                 "python_type": {"type": "filepath", "description": ""}},
                {"label": "prompt", "parameter_name": "prompt", "parameter_has_default": True,
                 "parameter_default": DEFAULT_PROMPT, "type": {"type": "string"}, "component": "Textbox",
                 "python_type": {"type": "str", "description": ""}},
            ],
            "returns": [{"label": "output", "type": {"type": "string"}, "component": "Textbox",
                         "python_type": {"type": "str", "description": ""}}],
            "api_visibility": "public",
        }
    return {"named_endpoints": named, "unnamed_endpoints": {}}


async def _config(request: web.Request) -> web.StreamResponse:
    if (refused := _refuse(request)) is not None:
        return refused
    return _json(200, config_body(request.app[_STATE].settings))


async def _info(request: web.Request) -> web.StreamResponse:
    if (refused := _refuse(request)) is not None:
        return refused
    return _json(200, info_body(request.app[_STATE].settings))


async def _upload(request: web.Request) -> web.StreamResponse:
    """``POST /gradio_api/upload``: each part named ``files`` is kept; the answer lists their server paths."""
    if (refused := _refuse(request)) is not None:
        return refused
    state, space = request.app[_STATE], request.app[SPACE]
    if not request.content_type.startswith("multipart/"):
        return _json(422, {"detail": [{"type": "missing", "loc": ["body", "files"], "msg": "Field required"}]})
    paths: list[str] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "files":
            continue
        data = await part.read()
        request[_CTX].nbytes += len(data)
        if len(data) > state.settings.max_body_bytes:
            return _json(413, {"detail": f"File too large: more than {state.settings.max_body_bytes} bytes"})
        name = (part.filename or "file").replace("/", "_")[:100]
        path = f"/tmp/gradio/{hashlib.sha256(data).hexdigest()}/{name}"
        space.uploads[path] = data
        space.uploads.move_to_end(path)
        while len(space.uploads) > _MAX_UPLOADS:
            space.uploads.popitem(last=False)
        paths.append(path)
    if not paths:
        return _json(422, {"detail": [{"type": "missing", "loc": ["body", "files"], "msg": "Field required"}]})
    return _json(200, paths)


# -- the queue ---------------------------------------------------------------------------------------------------


def _quota_error(space: SpaceState, now: float) -> dict[str, Any] | None:
    """ZeroGPU's refusal when the quota cannot cover one more call; else charge the call and return None."""
    s = space.settings
    if s.space_quota is None:
        return None
    if space.quota_back_at is not None and now >= space.quota_back_at:
        space.quota_left, space.quota_back_at = s.space_quota, None
    left = space.quota_left or 0.0
    if left >= s.space_gpu_duration:
        space.quota_left = left - s.space_gpu_duration
        return None
    if space.quota_back_at is None:
        space.quota_back_at = now + s.space_quota_reset
    wait = timedelta(seconds=round(space.quota_back_at - now))
    space.quota_refusals += 1
    message = (f"You have exceeded your free ZeroGPU quota ({s.space_gpu_duration:.0f}s requested vs. {left:.0f}s "
               f"left). Try again in {wait}. Subscribe to Hugging Face PRO to get more ZeroGPU quota a day")
    return {"error": message, "duration": 10, "visible": True, "title": "ZeroGPU quota exceeded"}


def _image_bytes(space: SpaceState, value: Any) -> bytes | None:
    """An image input as FileData: an uploaded ``path``, or a ``data:`` URL in ``url``."""
    if not isinstance(value, dict):
        return None
    path, url = value.get("path"), value.get("url")
    if isinstance(path, str) and path in space.uploads:
        return space.uploads.pop(path)
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        try:
            return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


async def _process(request_app: web.Application, call: _Call) -> tuple[str, Any]:
    """The app's function for one call: ZeroGPU's quota, then decode, caption and the model's time."""
    state, space = request_app[_STATE], request_app[SPACE]
    if (refused := _quota_error(space, time.monotonic())) is not None:
        return "error", refused
    space.invocations += 1
    data = call.data
    if not isinstance(data, list) or len(data) != 2:
        return "error", {"error": None}
    image, prompt = data
    space.inputs_seen.append(prompt)
    raw = _image_bytes(space, image)
    delay = state.delay()
    if raw is None or (state.settings.fail_rate and state.rng.random() < state.settings.fail_rate):
        await asyncio.sleep(delay)
        return "error", {"error": None}
    try:
        decoded = await _decode_async(raw)
    except ValueError:
        return "error", {"error": None}
    await asyncio.sleep(delay)
    return "complete", [decoded.caption]


async def _run(app: web.Application, call: _Call) -> None:
    space = app[SPACE]
    space.waiting += 1
    queued = True
    try:
        async with space.slots:
            space.waiting -= 1
            queued = False
            if call.cancelled:
                return
            call.started = True
            space.running += 1
            try:
                call.result = await _process(app, call)
            finally:
                space.running -= 1
    finally:
        if queued:
            space.waiting -= 1
        call.done.set()
        if call.session is not None and (changed := space.changed.get(call.session)) is not None:
            changed.set()


def _join(request: web.Request, api: str, data: Any, session: str | None) -> web.Response:
    """Queue one call (503 when the queue is full) and start it when a slot is free."""
    app, space = request.app, request.app[SPACE]
    limit = space.settings.space_queue_size
    if limit is not None and space.waiting >= limit:
        space.queue_full += 1
        return _json(503, {"detail": f"Queue is full. Max size is {limit} and size is {space.waiting}."})
    call = _Call(uuid.uuid4().hex, api, data, session)
    space.calls[call.event_id] = call
    if session is not None:
        space.sessions.setdefault(session, []).append(call.event_id)
        space.changed.setdefault(session, asyncio.Event()).set()
    task = asyncio.get_running_loop().create_task(_run(app, call))
    space.tasks.add(task)
    task.add_done_callback(space.tasks.discard)
    return _json(200, {"event_id": call.event_id})


async def _body_json(request: web.Request) -> tuple[Any, web.Response | None]:
    body = await request.read()
    request[_CTX].nbytes = len(body)
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        return None, _json(422, {"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]})


async def _call(request: web.Request) -> web.StreamResponse:
    """``POST /gradio_api/call/<api>``: ``{"data": [...]}`` -> ``{"event_id"}``."""
    if (refused := _refuse(request)) is not None:
        return refused
    api = request.match_info["api"]
    payload, bad = await _body_json(request)
    if bad is not None:
        return bad
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return _json(422, {"detail": [{"type": "missing", "loc": ["body", "data"], "msg": "Field required"}]})
    if api not in request.app[_STATE].settings.space_apis:
        return web.Response(status=500, text="Internal Server Error")
    return _join(request, api, payload["data"], None)


async def _sse(resp: web.StreamResponse, event: str, data: Any) -> None:
    await resp.write(f"event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")


async def _stream(request: web.Request) -> web.StreamResponse:
    """``GET /gradio_api/call/<api>/<event_id>``: the call's events, once; HTTP 200 whatever happened."""
    if (refused := _refuse(request)) is not None:
        return refused
    space = request.app[SPACE]
    event_id = request.match_info["event_id"]
    call = space.calls.get(event_id)
    heartbeat = space.settings.space_heartbeat
    resp = web.StreamResponse(status=200, headers=_SSE)
    await resp.prepare(request)
    if call is None and event_id not in space.consumed:
        await _sse(resp, "error", "404: Not Found")
        return resp
    if call is None or call.read:  # read before: the session is still known, its result is not
        deadline = time.monotonic() + _MAX_STREAM_S
        while time.monotonic() < deadline:
            await asyncio.sleep(heartbeat)
            await _sse(resp, "heartbeat", None)
        return resp
    call.read = True
    try:
        while not call.done.is_set():
            try:
                await asyncio.wait_for(call.done.wait(), timeout=heartbeat)
            except TimeoutError:
                await _sse(resp, "heartbeat", None)
        name, data = call.result
        await _sse(resp, name, data)
    except BaseException:
        if not call.started:  # the reader went away: Gradio takes its call out of the queue
            call.cancelled = True
        raise
    finally:
        space.calls.pop(event_id, None)
        space.consumed.append(event_id)
    return resp


# -- gradio_client's pair: queue/join and one queue/data stream per session -------------------------------------


async def _queue_join(request: web.Request) -> web.StreamResponse:
    if (refused := _refuse(request)) is not None:
        return refused
    payload, bad = await _body_json(request)
    if bad is not None:
        return bad
    apis = request.app[_STATE].settings.space_apis
    if not isinstance(payload, dict) or not isinstance(payload.get("session_hash"), str):
        return _json(400, {"detail": "Session hash not found."})
    index = payload.get("fn_index")
    if not isinstance(index, int) or not 0 <= index < len(apis):
        return web.Response(status=500, text="Internal Server Error")
    return _join(request, apis[index], payload.get("data"), payload["session_hash"])


def _completed(call: _Call) -> dict[str, Any]:
    name, data = call.result
    if name == "complete":
        return {"msg": "process_completed", "event_id": call.event_id, "success": True,
                "output": {"data": data, "is_generating": False, "duration": 0.0}}
    title = data.get("title", "Error") if isinstance(data, dict) else "Error"
    return {"msg": "process_completed", "event_id": call.event_id, "success": False, "title": title,
            "output": data if isinstance(data, dict) else {"error": data}}


async def _queue_data(request: web.Request) -> web.StreamResponse:
    """The session's messages as ``data: {...}`` lines; ``close_stream`` once none of its calls is pending."""
    if (refused := _refuse(request)) is not None:
        return refused
    space = request.app[SPACE]
    session = request.query.get("session_hash", "")
    changed = space.changed.setdefault(session, asyncio.Event())
    resp = web.StreamResponse(status=200, headers=_SSE)
    await resp.prepare(request)
    announced: set[str] = set()
    deadline = time.monotonic() + _MAX_STREAM_S
    try:
        while time.monotonic() < deadline:
            changed.clear()
            pending = space.sessions.get(session, [])
            for event_id in list(pending):
                call = space.calls.get(event_id)
                if call is None:
                    pending.remove(event_id)
                    continue
                if event_id not in announced:
                    announced.add(event_id)
                    await resp.write(b"data: " + orjson.dumps({"msg": "estimation", "event_id": event_id,
                                                               "rank": 0, "queue_size": space.waiting}) + b"\n\n")
                if call.done.is_set():
                    await resp.write(b"data: " + orjson.dumps(_completed(call)) + b"\n\n")
                    pending.remove(event_id)
                    space.calls.pop(event_id, None)
            if not pending:
                space.sessions.pop(session, None)
                space.changed.pop(session, None)
                await resp.write(b"data: " + orjson.dumps({"msg": "close_stream", "event_id": None}) + b"\n\n")
                return resp
            try:
                await asyncio.wait_for(changed.wait(), timeout=space.settings.space_heartbeat)
            except TimeoutError:
                await resp.write(b'data: {"msg":"heartbeat"}\n\n')
    except BaseException:
        for event_id in space.sessions.pop(session, []):
            if (call := space.calls.get(event_id)) is not None and not call.started:
                call.cancelled = True
        raise
    return resp


async def _close(app: web.Application) -> None:
    tasks = list(app[SPACE].tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def add_space_routes(app: web.Application, settings: EmulatorSettings) -> None:
    """The Gradio app's routes and state on ``app``."""
    app[SPACE] = SpaceState.create(settings)
    app.on_cleanup.append(_close)
    add_get, add_post = app.router.add_get, app.router.add_post
    add_get("/config", _config)
    add_get(f"{PREFIX}/info", _info)
    add_post(f"{PREFIX}/upload", _upload)
    add_post(PREFIX + "/call/{api}", _call)
    add_get(PREFIX + "/call/{api}/{event_id}", _stream)
    add_post(f"{PREFIX}/queue/join", _queue_join)
    add_get(f"{PREFIX}/queue/data", _queue_data)
