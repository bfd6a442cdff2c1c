"""What each route shape reads and writes on the wire: serverless, Inference Endpoint and OpenAI chat bodies.

The formats follow protocol.md, including the quirks clients must cope with (the Endpoint's Content-Type
whitelist, TGI-style validation errors on the chat route), so a client that works here works against the real
services. Parsing never raises: a malformed body becomes the error answer the real service would give.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from batchcap.emulator import billing
from batchcap.emulator.settings import EmulatorSettings
from batchcap.emulator.state import _CTX, _STATE

__all__ = ["ENDPOINT_CONTENT_TYPES", "PROVIDER_HEADER", "model_entry", "models_list"]


@dataclass(frozen=True, slots=True)
class _Payload:
    """What a route extracted from the body: image bytes or a ready error answer, plus a legacy wait hint; on the
    chat route the prompt text and the JSON schema asked for (``response_format``), if any."""

    image: bytes | None = None
    error: web.Response | None = None
    wait_for_model: bool = False
    prompt: str = ""  #: chat: the text parts of the messages
    max_tokens: int | None = None  #: chat: ``max_tokens`` (or ``max_completion_tokens``)
    model: str = ""  #: chat: the model id as asked, router suffix included
    schema: dict[str, Any] | None = None  #: chat: the JSON schema ``response_format`` asked for


_Parse = Callable[[web.Request, bytes], _Payload]
_Answer = Callable[[web.Request, str], web.Response]

_NOT_IMAGE = "cannot identify image file"
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
    """OpenAI chat body: the first ``image_url`` part must be a ``data:<mime>;base64,<b64>`` URI; the text parts are
    the prompt; ``response_format`` is read in the profile's spelling (``_schema_asked``)."""
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
    tgi = request.app[_STATE].settings.profile == "tgi"
    schema, refusal = _schema_asked(payload.get("response_format") if isinstance(payload, dict) else None, tgi=tgi)
    if refusal is not None:
        return _Payload(error=refusal)
    image = _b64_image(data)
    if image is None:
        return _invalid("image_url is not valid base64")
    limit = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        return _invalid(f"max_tokens must be a positive integer (got {limit!r})")
    model = payload.get("model")
    return _Payload(image=image, prompt=_prompt_text(payload), max_tokens=limit,
                    model=model if isinstance(model, str) else "", schema=schema)


def _schema_asked(fmt: object, *, tgi: bool) -> tuple[dict[str, Any] | None, web.Response | None]:
    """The JSON schema a ``response_format`` asks for, or the refusal a real server gives its spelling.

    OpenAI / the HF router / vLLM: ``{"type": "json_schema", "json_schema": {"name", "schema"}}``; TGI (the
    ``tgi`` profile): ``{"type": "json_schema", "value": {"name", "schema"}}`` or ``{"type": "json", "value":
    SCHEMA}``, and TGI's serde refuses the OpenAI spelling with a 422. ``json_object`` asks for any object.
    """
    if fmt is None:
        return None, None
    if not isinstance(fmt, dict):
        return None, _tgi_error(422, "Failed to deserialize the JSON body into the target type: response_format: "
                                     "invalid type")
    kind = fmt.get("type")
    if tgi:
        value = fmt.get("value")
        if kind in ("json", "json_object") and isinstance(value, dict):
            return value, None
        if kind == "json_schema" and isinstance(value, dict) and isinstance(value.get("schema"), dict):
            return value["schema"], None
        return None, _tgi_error(422, "Failed to deserialize the JSON body into the target type: response_format: "
                                     "missing field `value`")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            return spec["schema"], None
        return None, _json(400, {"error": {"message": "Missing required parameter: 'response_format.json_schema'.",
                                           "type": "invalid_request_error", "param": "response_format",
                                           "code": "missing_required_parameter"}})
    if kind == "json_object":
        return {"type": "object"}, None
    if kind == "text":
        return None, None
    return None, _json(400, {"error": {"message": f"Invalid value: {kind!r}. Supported values are: 'json_object', "
                                                  "'json_schema', and 'text'.", "type": "invalid_request_error",
                                       "param": "response_format.type", "code": "invalid_value"}})


def _prompt_text(payload: dict[str, object]) -> str:
    """Every text part of the messages (a string content, or its ``{"type": "text"}`` parts), joined."""
    texts: list[str] = []
    messages = payload.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts)


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
    """The pipeline's list, or the shape a custom handler chose (``answer_shape``)."""
    shape = request.app[_STATE].settings.answer_shape
    if shape == "object":  # older servers and many custom handlers: accepted by batchcap, not by huggingface_hub
        return _json(200, {"generated_text": caption})
    if shape == "string":  # a handler that returns its caption bare: a 200 no client can read
        return _json(200, caption)
    return _json(200, [{"generated_text": caption}])


def _answer_chat(request: web.Request, caption: str) -> web.Response:
    """The OpenAI chat answer, with ``usage`` counted as a VLM would (see ``billing``) and the caption cut at
    ``max_tokens``; on the router's profiles the serving provider is named and the answer billed at its price."""
    ctx, settings = request[_CTX], request.app[_STATE].settings
    router = settings.profile != "tgi"
    provider = billing.pick_provider(ctx.model, settings.providers) if router else None
    if router and provider is None:
        return _json(400, {"error": f"The requested model '{ctx.model}' is not supported by any provider you have "
                                    "enabled."})
    finish = "stop"
    completion_tokens = billing.text_tokens(caption)
    if ctx.max_tokens is not None and completion_tokens > ctx.max_tokens:
        caption = caption[: 4 * ctx.max_tokens].rstrip()
        completion_tokens, finish = ctx.max_tokens, "length"
    decoded = ctx.decoded
    prompt_tokens = billing.text_tokens(ctx.prompt) + (
        billing.image_tokens(decoded.width, decoded.height) if decoded is not None else 2)
    ctx.usage = (prompt_tokens, completion_tokens)
    ctx.provider = provider.name if provider is not None else ""
    ctx.cost = billing.usage_cost(provider, prompt_tokens, completion_tokens)
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
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return _json(200, body, headers={PROVIDER_HEADER: provider.name} if provider is not None else None)


#: The HF router names who served a request here (protocol.md 1.1).
PROVIDER_HEADER = "x-inference-provider"


def models_list(settings: EmulatorSettings) -> dict[str, object]:
    """``GET /v1/models`` in the router's shape (hub-docs ``hub-api.md``): the model, its providers, their
    ``pricing`` in USD per 1M tokens (left out for a provider without a price). TGI lists the bare model."""
    return {"object": "list", "data": [model_entry(settings)]}


def model_entry(settings: EmulatorSettings) -> dict[str, object]:
    """The one model's entry of ``models_list`` (also ``GET /v1/models/{id}``)."""
    entry: dict[str, object] = {"id": settings.model_id, "object": "model", "created": 1700000000,
                                "owned_by": settings.model_id.partition("/")[0] or "emulator"}
    if settings.profile != "tgi":
        entry["architecture"] = {"input_modalities": ["text", "image"], "output_modalities": ["text"]}
        providers = []
        for p in settings.providers:
            item: dict[str, object] = {"provider": p.name, "status": "live", "context_length": 32768}
            if p.input is not None and p.output is not None:
                item["pricing"] = {"input": p.input, "output": p.output}
            item["is_model_author"] = False
            providers.append(item)
        entry["providers"] = providers
    return entry
