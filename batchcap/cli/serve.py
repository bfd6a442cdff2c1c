"""``batchcap serve``: the local emulator of the hosted services, in the foreground until Ctrl-C.

Its flags are a table (``FLAGS``); the settings they make are ``batchcap.emulator.EmulatorSettings`` (and the
management API's ``ManagedEndpointSettings``); the serving loop is the emulator's own (``emulator.serve``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchcap.emulator.billing import ProviderPrice
from batchcap.emulator.management import ManagedEndpointSettings
from batchcap.emulator.settings import (
    DEFAULT_MODEL_ID,
    DEFAULT_TOKEN,
    PROFILES,
    WINDOW_HEADERS,
    EmulatorSettings,
)
from batchcap.emulator.standalone import serve
from batchcap.errors import ConfigError
from batchcap.redact import TOKEN_HINT, looks_like_token

__all__ = ["FLAGS", "add_arguments", "main", "managed_from_args", "settings_from_args"]

#: Every ``serve`` flag: its spellings and its argparse keywords. The token comes from a file, so it never shows
#: in ``ps`` or shell history.
FLAGS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--host",), {"default": "127.0.0.1", "help": "interface to bind (default: %(default)s)"}),
    (
        ("--port",),
        {"type": int, "default": 8080, "help": "TCP port, 0 for any free one (default: %(default)s)"},
    ),
    (
        ("--managed-endpoint",),
        {
            "metavar": "NS/NAME",
            "help": "also serve the Inference Endpoints management API for an Endpoint NS/NAME in front of this emulator (its own ports, printed at start; token as --token-file, default the test token)",
        },
    ),
    (
        ("--managed-state",),
        {
            "choices": ("paused", "scaledToZero", "running"),
            "default": "paused",
            "help": "the state the managed Endpoint starts in (default: %(default)s)",
        },
    ),
    (
        ("--auth",),
        {
            "choices": ("public", "protected"),
            "default": "public",
            "help": "require a bearer token (default: %(default)s)",
        },
    ),
    (
        ("--token-file",),
        {
            "type": Path,
            "metavar": "PATH",
            "help": f"file with the token(s) accepted in protected mode, one per line (default: the test token {DEFAULT_TOKEN})",
        },
    ),
    (
        ("--rate",),
        {
            "type": float,
            "metavar": "R",
            "help": "requests/s admitted across all model routes (default: unlimited)",
        },
    ),
    (("--burst",), {"type": int, "metavar": "B", "help": "token-bucket size (default: max(1, int(rate)))"}),
    (
        ("--retry-after",),
        {"action": "store_true", "help": "send Retry-After on 429, unlike real inference (default: off)"},
    ),
    (
        ("--cold-start",),
        {
            "type": float,
            "default": 0.0,
            "metavar": "S",
            "help": "seconds the model 'loads' after the first admitted request (default: %(default)s)",
        },
    ),
    (
        ("--cold-start-status",),
        {
            "type": int,
            "choices": (502, 503),
            "default": 503,
            "help": "status while loading: 503 JSON (serverless) or 502 HTML (scaled-to-zero endpoint) (default: %(default)s)",
        },
    ),
    (
        ("--latency",),
        {
            "type": float,
            "default": 0.0,
            "metavar": "S",
            "help": "mean seconds per answer (default: %(default)s)",
        },
    ),
    (
        ("--latency-jitter",),
        {
            "type": float,
            "default": 0.0,
            "metavar": "S",
            "help": "uniform noise in [-S, +S] added to each delay (default: %(default)s)",
        },
    ),
    (
        ("--latency-dist",),
        {
            "choices": ("fixed", "uniform", "exponential"),
            "default": "fixed",
            "help": "shape of the delay around --latency (default: %(default)s)",
        },
    ),
    (
        ("--fail-rate",),
        {
            "type": float,
            "default": 0.0,
            "metavar": "F",
            "help": "fraction answered 500 (default: %(default)s)",
        },
    ),
    (
        ("--seed",),
        {
            "type": int,
            "default": 0,
            "metavar": "N",
            "help": "seed for failures and latency (default: %(default)s)",
        },
    ),
    (
        ("--profile",),
        {
            "choices": PROFILES,
            "default": "all",
            "help": "which server to be: every route leniently (all), the Inference Toolkit container's port, strict (endpoint), the router (serverless), or TGI (tgi) (default: %(default)s)",
        },
    ),
    (
        ("--replicas",),
        {"type": int, "metavar": "N", "help": "model replicas (default: unlimited; 1 for endpoint and tgi)"},
    ),
    (
        ("--replica-concurrency",),
        {
            "type": int,
            "metavar": "N",
            "help": "requests one replica runs at once; more wait in a FIFO queue (default: unlimited; 1 for endpoint)",
        },
    ),
    (
        ("--batching",),
        {
            "action": "store_true",
            "help": "TGI-like batching: up to --max-batch requests together, latency*(1+alpha*(batch-1)) each",
        },
    ),
    (("--max-batch",), {"type": int, "metavar": "N", "help": "largest batch with --batching (default: 8)"}),
    (
        ("--batch-alpha",),
        {
            "type": float,
            "default": 0.1,
            "metavar": "A",
            "help": "batching cost per extra request in a batch (default: %(default)s)",
        },
    ),
    (
        ("--space-concurrency",),
        {"type": int, "default": 1, "metavar": "N",
         "help": "Space (--profile space or all): calls run at once (Gradio's default: 1)"},
    ),
    (
        ("--space-queue-size",),
        {"type": int, "metavar": "N", "help": "Space: calls waiting at most; more get 503 \"Queue is full\""},
    ),
    (
        ("--space-quota",),
        {"type": float, "metavar": "SECONDS",
         "help": "Space: a ZeroGPU quota of this many GPU seconds, 60 charged per call, back 588 s after it ran out"},
    ),
    (
        ("--credits",),
        {"type": int, "metavar": "N", "help": "answer 402 (credits exhausted) once N captions were admitted"},
    ),
    (("--legacy-gone",), {"action": "store_true", "help": "answer 410 on the retired /models/<id> route"}),
    (
        ("--window-quota",),
        {"type": int, "metavar": "N",
         "help": "a fixed-window limit: N requests per --window-seconds, counted per epoch-aligned window (LiteLLM's "
                 "rpm counts per calendar minute); 429 beyond it; 0 refuses everything (default: off)"},
    ),
    (("--window-seconds",), {"type": float, "default": 60.0, "metavar": "S",
                             "help": "the window's length (default: %(default)s)"}),
    (
        ("--window-headers",),
        {"choices": WINDOW_HEADERS, "default": "none",
         "help": "how the window tells its clients: none (LiteLLM), ietf (RateLimit/RateLimit-Policy, the Hub), "
                 "openai (x-ratelimit-*-requests), retry-after (on its 429s only) (default: %(default)s)"},
    ),
    (
        ("--models",),
        {
            "metavar": "ID,...",
            "default": DEFAULT_MODEL_ID,
            "help": "model ids the serverless routes serve; any other id is answered 404 Not Found, as the router "
            "does (default: %(default)s)",
        },
    ),
    (
        ("--answer-shape",),
        {
            "choices": ("list", "object", "string"),
            "default": "list",
            "help": 'image-to-text success body: [{"generated_text": ...}] (list), a bare object, or a bare string (a broken custom handler) (default: %(default)s)',
        },
    ),
    (
        ("--max-body-mb",),
        {
            "action": "append",
            "default": [],
            "metavar": "[ROUTE=]MB",
            "help": "body limit in MB (10^6 bytes) for every route, or for one of serverless, endpoint, chat; 413 with TGI's message beyond it (default: chat=2 as TGI, others 20 MiB); repeatable",
        },
    ),
    (
        ("--provider",),
        {
            "action": "append",
            "default": [],
            "metavar": "NAME[=IN,OUT]",
            "help": "a provider of the emulated router with its price in USD per 1M input,output tokens (none: listed "
                    "without pricing); the first serves by default, MODEL:NAME picks one, MODEL:cheapest the cheapest; "
                    "repeatable (default: emu-fast=0.25,1 emu-cheap=0.1,0.4 emu-unpriced)",
        },
    ),
)

#: Seeded network faults, each a ``--NAME-rate F`` flag: (name, what a fraction F of the answers does).
FAULTS = (
    ("reset", "connections reset after the work"),
    ("truncate", "200s whose body stops short of its Content-Length"),
    ("proxy-error", "HTML 502/504 from a proxy, at once"),
    ("garble", "200s whose body is not JSON"),
    ("hang", "requests never answered until the client gives up"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Start the local emulator of the HF Inference API, Inference Endpoints and OpenAI-compatible "
        "chat servers (for the demo, tests and benchmarks)."
    )
    for flags, kwargs in FLAGS:
        p.add_argument(*flags, **kwargs)
    for name, what in FAULTS:
        p.add_argument(
            f"--{name}-rate", type=float, default=0.0, metavar="F", help=f"fraction of {what} (default: 0)"
        )
    p.add_argument("--invalid-json-rate", type=float, default=0.0, metavar="F",
                   help="chat answers asked for JSON (response_format): fraction of (image, prompt) pairs whose "
                        "first answer does not match the schema (default: 0)")


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    return serve(settings_from_args(ns), ns.host, ns.port, managed_from_args(ns))


def _read_tokens(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        if looks_like_token(path):  # a token pasted where its file goes: never echoed (issue 21)
            raise ConfigError(f"--token-file: {TOKEN_HINT}") from None
        raise ConfigError(
            f"cannot read --token-file {path}: {exc.strerror}; write one token per line"
        ) from None
    tokens = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not tokens:
        raise ConfigError(f"--token-file {path} holds no token; write one token per line")
    return tokens


def _models(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    if not models:
        raise ConfigError(f"--models {text!r}: give one or more model ids, comma-separated")
    return models


_BODY_ROUTES = ("serverless", "endpoint", "chat")


def _body_limits(values: list[str]) -> dict[str, int]:
    """``--max-body-mb`` values as EmulatorSettings fields; later flags win."""
    fields = {
        "serverless": "max_body_bytes",
        "endpoint": "endpoint_max_body_bytes",
        "chat": "chat_max_body_bytes",
    }
    limits: dict[str, int] = {}
    for value in values:
        route, sep, number = value.rpartition("=")
        routes = (route,) if sep else _BODY_ROUTES
        if sep and route not in fields:
            raise ConfigError(f"--max-body-mb {value}: route must be one of {', '.join(_BODY_ROUTES)}")
        try:
            mb = float(number)
        except ValueError:
            raise ConfigError(f"--max-body-mb {value}: {number!r} is not a number of MB") from None
        if not mb > 0:
            raise ConfigError(f"--max-body-mb {value}: the limit must be > 0 MB")
        for name in routes:
            limits[fields[name]] = max(1, round(mb * 1_000_000))
    return limits


def _providers(values: list[str]) -> dict[str, tuple[ProviderPrice, ...]]:
    """``--provider NAME[=IN,OUT]`` values as the ``providers`` setting (none given: the default list)."""
    out = []
    for value in values:
        name, sep, prices = value.partition("=")
        if not sep:
            out.append(ProviderPrice(name.strip()))
            continue
        try:
            price_in, price_out = (float(x) for x in prices.split(","))
        except ValueError:
            raise ConfigError(f"--provider {value}: write NAME=IN,OUT in USD per 1M tokens, e.g. fast=0.25,1") \
                from None
        out.append(ProviderPrice(name.strip(), price_in, price_out))
    return {"providers": tuple(out)} if out else {}


def settings_from_args(ns: argparse.Namespace) -> EmulatorSettings:
    """Build settings from :func:`add_arguments` options; raises ``ConfigError`` with a hint when one is invalid."""
    tokens = _read_tokens(ns.token_file) if ns.token_file is not None else (DEFAULT_TOKEN,)
    max_batch = ns.max_batch if ns.max_batch is not None else (8 if ns.batching else None)
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
        profile=ns.profile,
        replicas=ns.replicas,
        replica_concurrency=ns.replica_concurrency,
        max_batch=max_batch,
        batch_alpha=ns.batch_alpha,
        reset_rate=ns.reset_rate,
        truncate_rate=ns.truncate_rate,
        proxy_error_rate=ns.proxy_error_rate,
        garble_rate=ns.garble_rate,
        hang_rate=ns.hang_rate,
        credits=ns.credits,
        space_concurrency=ns.space_concurrency,
        space_queue_size=ns.space_queue_size,
        space_quota=ns.space_quota,
        legacy_gone=ns.legacy_gone,
        answer_shape=ns.answer_shape,
        window_quota=ns.window_quota,
        window_seconds=ns.window_seconds,
        window_headers=ns.window_headers,
        invalid_json_rate=ns.invalid_json_rate,
        models=_models(ns.models),
        **_body_limits(ns.max_body_mb),  # type: ignore[arg-type]
        **_providers(ns.provider),  # type: ignore[arg-type]
    )


def managed_from_args(ns: argparse.Namespace) -> ManagedEndpointSettings | None:
    """``--managed-endpoint NS/NAME``: the Inference Endpoints management API in front of the emulator."""
    if not ns.managed_endpoint:
        return None
    namespace, sep, name = ns.managed_endpoint.partition("/")
    if not sep or not namespace or not name:
        raise ConfigError(
            f"--managed-endpoint {ns.managed_endpoint!r}: write NAMESPACE/NAME, e.g. acme/captioner"
        )
    tokens = _read_tokens(ns.token_file) if ns.token_file is not None else (DEFAULT_TOKEN,)
    return ManagedEndpointSettings(namespace=namespace, name=name, state=ns.managed_state, tokens=tokens)
