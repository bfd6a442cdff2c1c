"""The faults of real networks and proxies, drawn from the seeded generator: resets, cut bodies, HTML 5xx, garbled
200s, hangs; plus the account-level answers (402 when the credits run out, 410 for the retired serverless host).

One draw per model request decides its fault (``draw``), compared against the rates in ``FAULT_KNOBS`` order, and
only when some rate is set, so a seed gives the same stream of answers as before these knobs existed. Where each
fault strikes follows what the real thing does: a proxy's 502/504 and a hang come before the model (no replica
time is spent), a reset, a cut body and a garbled body come after it (the work was done, the answer was lost).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import Literal

from aiohttp import web

from batchcap.emulator.settings import FAULT_KNOBS, EmulatorSettings

__all__ = ["CREDITS_EXHAUSTED", "LEGACY_GONE", "Fault", "draw"]

Fault = Literal["", "error", "reset", "truncated", "proxy", "garbled", "hang"]
_NAMES: dict[str, Fault] = {
    "fail_rate": "error",
    "reset_rate": "reset",
    "truncate_rate": "truncated",
    "proxy_error_rate": "proxy",
    "garble_rate": "garbled",
    "hang_rate": "hang",
}

#: The router's answer once the monthly credits are spent (protocol.md section 9); the status is 402.
CREDITS_EXHAUSTED = (
    "You have exceeded your monthly included credits for Inference Providers. "
    "Subscribe to PRO to get 20x more monthly included credits."
)
#: What the retired ``api-inference.huggingface.co`` host answers, with 410 (protocol.md 1.1).
LEGACY_GONE = (
    "https://api-inference.huggingface.co is no longer supported. Please use https://router.huggingface.co instead."
)
_GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n"
    "<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
#: A hung request gives up on its own after this long, so a forgotten client never pins the emulator forever.
HANG_LIMIT_S = 600.0
_HANG_POLL_S = 0.05


def draw(rng: random.Random, settings: EmulatorSettings) -> Fault:
    """The fault for one request (``""`` for none); draws from ``rng`` only when a fault rate is set."""
    rates = [(name, getattr(settings, name)) for name in FAULT_KNOBS]
    if not any(rate for _, rate in rates):
        return ""
    u = rng.random()
    edge = 0.0
    for name, rate in rates:
        edge += rate
        if u < edge:
            return _NAMES[name]
    return ""


def gateway_error(rng: random.Random) -> web.Response:
    """An nginx/CloudFront-style HTML 502 or 504, the kind huggingface_hub ignores the body of."""
    status, reason = (502, "Bad Gateway") if rng.random() < 0.5 else (504, "Gateway Time-out")
    return web.Response(
        status=status, text=_GATEWAY_HTML.format(status=status, reason=reason), content_type="text/html"
    )


async def hang(request: web.Request) -> None:
    """Answer nothing until the client closes the connection (or ``HANG_LIMIT_S`` passes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_LIMIT_S
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(_HANG_POLL_S)


def reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed proxy or a NAT timeout does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def truncated(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Send the headers of ``response`` with its full Content-Length, then half the body, then close."""
    body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
    stream = web.StreamResponse(status=response.status, headers={"Content-Type": response.content_type})
    stream.content_length = max(len(body), 2)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    transport = request.transport
    if transport is not None:
        transport.close()
    return stream


def garbled(response: web.Response) -> web.Response:
    """A 200 that is not JSON: the first half of the real body, then bytes a broken proxy might add."""
    body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
    return web.Response(
        status=200, body=body[: len(body) // 2] + b"\x00\xff<!-- upstream -->", content_type="application/json"
    )
