"""The Inference Toolkit container's own rules, for the ``endpoint`` profile (protocol.md sections 3 and 9).

Measured on the real container: the Content-Type is matched exactly (case and parameters included), an
``Accept`` it cannot serialise to is refused after inference ran, every handler failure is a 400 (never a 500)
whose message carries Python noise (object addresses, the request body echoed), and no ``x-request-id`` is sent.
The noise here is deterministic but differs from request to request, as it does on the real server, so a client
that groups refusals by exact text sees two identical refusals as different.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from batchcap.emulator.bodies import ENDPOINT_CONTENT_TYPES, _b64_image, _json, _Payload

__all__ = ["ACCEPTED_ACCEPT", "accept_error", "handler_error", "metrics_text", "noise_address", "parse_strict"]

#: ``Accept`` values the container answers (none at all is fine too).
ACCEPTED_ACCEPT = frozenset({"*/*", "application/json"})
_EXACT = frozenset(ENDPOINT_CONTENT_TYPES)
_IMAGE_TYPES = frozenset(ct for ct in ENDPOINT_CONTENT_TYPES if ct.startswith("image/"))
_ECHO_MAX = 200  # the real container echoes the whole body; a few hundred bytes make the same point


def noise_address(n: int) -> str:
    """A CPython-looking object address that changes with the request number ``n``."""
    return f"0x7f{(0x3A2C1D5E40 + 0x1F0 * n) & 0xFF_FFFF_FFFF:010x}"


def handler_error(message: str) -> web.Response:
    """How the container wraps any exception: ``400 {"error": str(e)}``."""
    return _json(400, {"error": message})


def _not_supported(raw: str | None) -> str:
    return (
        f'\n                Content type "{raw}" not supported.\n                Supported content types are:\n'
        f"                {', '.join(ENDPOINT_CONTENT_TYPES)}\n            "
    )


def parse_strict(request: web.Request, body: bytes, n: int) -> _Payload:
    """The container's deserialisation: an exact Content-Type, then an image body or JSON with ``inputs``."""
    raw = request.headers.get("Content-Type")
    if raw not in _EXACT:
        return _Payload(error=handler_error(_not_supported(raw)))
    if raw in _IMAGE_TYPES:
        return _Payload(image=body)
    if raw.startswith("application/json"):
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _Payload(error=handler_error(str(exc)))
        if not isinstance(payload, dict) or "inputs" not in payload:
            echoed = orjson.dumps(payload)[:_ECHO_MAX]
            return _Payload(error=handler_error(f"Body needs to provide a inputs key, recieved: {echoed!r}"))
        image = _b64_image(payload["inputs"])
        if image is None:
            return _Payload(error=handler_error(not_an_image(n)))
        return _Payload(image=image)
    # text/csv, text/plain and audio types deserialise, then the image-to-text pipeline chokes on them
    return _Payload(error=handler_error(f"Incorrect format used for image. Got {body[:_ECHO_MAX]!r}"))


def not_an_image(n: int) -> str:
    """Pillow's own words for bytes it cannot open, address included."""
    return f"cannot identify image file <_io.BytesIO object at {noise_address(n)}>"


def oom_error(n: int, width: int, height: int) -> str:
    """What ``fail_rate`` answers on the Endpoint port: the handler raised, so a 400, never a 500."""
    image = f"<PIL.JpegImagePlugin.JpegImageFile image mode=RGB size={width}x{height} at {noise_address(n)}>"
    return (
        f"CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 14.58 GiB total capacity) "
        f"while handling {{'inputs': {image}}}"
    )


def accept_error(accept: str) -> web.Response | None:
    """The 400 for an ``Accept`` the container cannot serialise to (checked after inference), else None."""
    if accept in ACCEPTED_ACCEPT:
        return None
    return handler_error(f"'{accept}'")


def metrics_text(total: int, ok: int) -> str:
    """A Prometheus exposition, enough for a scraper (and a health check) to read."""
    return (
        "# HELP batchcap_emulator_requests_total Model requests answered.\n"
        "# TYPE batchcap_emulator_requests_total counter\n"
        f"batchcap_emulator_requests_total {total}\n"
        "# HELP batchcap_emulator_captions_total Requests answered 200.\n"
        "# TYPE batchcap_emulator_captions_total counter\n"
        f"batchcap_emulator_captions_total {ok}\n"
    )
