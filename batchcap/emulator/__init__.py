"""A local aiohttp server that imitates the hosted HF inference services (protocol.md sections 8 and 9).

The client, the pipeline and the benchmarks need a server that answers like the real ones and fails in the
documented ways on demand, without a token, a network or a GPU. Captions are derived from the pixels (upright
size, mode, format, main colour), so a test can compute the expected caption with :func:`caption_for` and
compare, and the request log keeps what was decoded (:class:`Decoded`: size, mode, EXIF, GPS).

``EmulatorSettings(profile=...)`` picks how strict: ``all`` (default) serves every route shape leniently;
``endpoint`` is the Inference Toolkit container as measured (one request at a time, exact Content-Type, 400 for
everything, no request id), ``serverless`` the router, ``tgi`` a batching TGI. Capacity (replicas, slots,
batching), network faults (resets, cut bodies, HTML 502/504, garbled 200s, hangs), credits (402) and the retired
host (410) are knobs of the same settings.

One job per module, in dependency order: ``captions`` (pixels -> caption), ``answers`` (caption and prompt ->
the chat answer, JSON for a schema), ``settings`` (the knobs), ``log`` (what was answered), ``capacity``
(replicas, FIFO queue, batching), ``state`` (per-app mutable state), ``bodies``
(request and answer formats per route shape), ``toolkit`` (the Endpoint container's strict rules), ``faults``
(network and account faults), ``proxy`` (refusals before the model), ``app`` (routes and the check order),
``server`` (on a socket, in-process), ``standalone`` (the ``batchcap serve`` loop). Import from here: the submodules are an
implementation detail.
"""

from __future__ import annotations

from batchcap.emulator.answers import chat_answer_for, json_answer_for, prompt_tag
from batchcap.emulator.app import make_app
from batchcap.emulator.capacity import ModelPool
from batchcap.emulator.captions import Decoded, caption_for
from batchcap.emulator.faults import CREDITS_EXHAUSTED, LEGACY_GONE
from batchcap.emulator.log import LogEntry, RequestLog, RouteKind
from batchcap.emulator.management import (
    ManagedEndpointSettings,
    RunningManagedEndpoint,
    start_managed_endpoint,
)
from batchcap.emulator.server import RunningEmulator, start_emulator
from batchcap.emulator.settings import (
    DEFAULT_MODEL_ID,
    DEFAULT_TOKEN,
    PROFILES,
    TGI_PAYLOAD_LIMIT,
    Capacity,
    EmulatorSettings,
    Profile,
)
from batchcap.emulator.standalone import serve
from batchcap.emulator.state import REQUEST_LOG
from batchcap.emulator.state import (
    _TokenBucket as _TokenBucket,  # not public: the tests check its arithmetic directly
)

__all__ = [
    "CREDITS_EXHAUSTED",
    "DEFAULT_MODEL_ID",
    "DEFAULT_TOKEN",
    "LEGACY_GONE",
    "PROFILES",
    "REQUEST_LOG",
    "TGI_PAYLOAD_LIMIT",
    "Capacity",
    "Decoded",
    "EmulatorSettings",
    "LogEntry",
    "ManagedEndpointSettings",
    "ModelPool",
    "Profile",
    "RequestLog",
    "RouteKind",
    "RunningEmulator",
    "RunningManagedEndpoint",
    "caption_for",
    "chat_answer_for",
    "json_answer_for",
    "make_app",
    "prompt_tag",
    "serve",
    "start_emulator",
    "start_managed_endpoint",
]
