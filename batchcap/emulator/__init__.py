"""A local aiohttp server that imitates the hosted HF inference services (protocol.md section 8).

The client, the pipeline and the benchmarks need a server that answers like the real ones and fails in the
documented ways on demand, without a token, a network or a GPU. Captions are derived from the pixels, so a test
can compute the expected caption with :func:`caption_for` and compare.

One job per module, in dependency order: ``captions`` (pixels -> caption), ``settings`` (the knobs), ``log``
(what was answered), ``state`` (per-app mutable state), ``wire`` (request and answer formats per route shape),
``proxy`` (refusals before the model), ``app`` (routes and the check order), ``server`` (on a socket, in-process),
``command`` (``batchcap serve``). Import from here: the submodules are an implementation detail.
"""

from __future__ import annotations

from .app import make_app
from .captions import caption_for
from .command import add_arguments, serve, settings_from_args
from .log import LogEntry, RequestLog, RouteKind
from .server import RunningEmulator, start_emulator
from .settings import DEFAULT_MODEL_ID, DEFAULT_TOKEN, EmulatorSettings
from .state import REQUEST_LOG
from .state import _TokenBucket as _TokenBucket  # not public: the tests check its arithmetic directly

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
