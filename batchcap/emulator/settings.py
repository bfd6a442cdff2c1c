"""How an emulator behaves, checked once at construction so a bad knob fails before a socket is opened."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from batchcap.emulator.billing import ProviderPrice
from batchcap.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_PROVIDERS",
    "DEFAULT_TOKEN",
    "FAULT_KNOBS",
    "PROFILES",
    "TGI_PAYLOAD_LIMIT",
    "WINDOW_HEADERS",
    "AnswerShape",
    "Capacity",
    "EmulatorSettings",
    "LatencyDist",
    "Profile",
    "WindowHeaders",
]

DEFAULT_TOKEN = "hf_emulator_token"
#: The emulated router's providers (USD per 1M input / output tokens, like small VLMs on the HF router); the
#: last lists no price, as some real ones do not.
DEFAULT_PROVIDERS = (
    ProviderPrice("emu-fast", 0.25, 1.00),
    ProviderPrice("emu-cheap", 0.10, 0.40),
    ProviderPrice("emu-unpriced"),
)
DEFAULT_MODEL_ID = "Salesforce/blip-image-captioning-base"
#: TGI's ``--payload-limit`` default (protocol.md sections 3 and 9), bytes.
TGI_PAYLOAD_LIMIT = 2_000_000

LatencyDist = Literal["fixed", "uniform", "exponential"]
Profile = Literal["all", "endpoint", "serverless", "tgi", "space"]
AnswerShape = Literal["list", "object", "string"]
#: How a fixed-window limit tells its clients: nothing (LiteLLM's rpm), IETF ``RateLimit``/``RateLimit-Policy``
#: (the Hub), OpenAI's ``x-ratelimit-*-requests``, or only ``Retry-After`` on its 429s.
WindowHeaders = Literal["none", "ietf", "openai", "retry-after"]
WINDOW_HEADERS: tuple[WindowHeaders, ...] = ("none", "ietf", "openai", "retry-after")
PROFILES: tuple[Profile, ...] = ("all", "endpoint", "serverless", "tgi", "space")
#: The seeded fault knobs, in the order one random draw is compared against them (see ``faults.py``).
FAULT_KNOBS = ("fail_rate", "reset_rate", "truncate_rate", "proxy_error_rate", "garble_rate", "hang_rate")


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many requests the model runs at once: ``replicas`` x ``slots`` each, sharing one FIFO queue.

    ``alpha`` is the batching cost: with ``b`` requests in one replica each progresses at ``1 / (1 + alpha *
    (b - 1))`` of its solo speed, so a request alone takes ``latency`` and a full batch of ``b`` takes
    ``latency * (1 + alpha * (b - 1))`` (TGI/vLLM-like continuous batching: a request joins the running batch
    as soon as a slot is free). ``alpha = 0`` is plain parallel slots (threads).
    """

    replicas: int
    slots: int
    alpha: float

    @property
    def total(self) -> int:
        return self.replicas * self.slots


@dataclass(frozen=True, slots=True)
class EmulatorSettings:
    """How the emulator behaves. The defaults answer every request at once and correctly.

    ``latency`` is the mean delay of a request that reaches the model; ``latency_dist`` its shape (``fixed``,
    ``uniform`` on [0, 2*latency], ``exponential``); ``latency_jitter`` adds uniform noise in [-j, +j]. ``burst``
    defaults to ``max(1, int(rate))``. ``cold_start`` seconds are counted from the first request admitted to a
    model route: refused requests (401, 413, 429) and health probes do not wake the model.

    ``profile`` picks the routes and strictness (protocol.md section 9):

    * ``all`` (default): every route shape on one port, lenient (today's behaviour; what most tests use);
    * ``endpoint``: the Inference Toolkit container's port: ``POST /`` and ``/predict``, ``GET /``, ``/health``
      and ``/metrics``, anything else 404; Content-Type matched exactly (case and parameters included); an
      ``Accept`` other than none, ``*/*`` or ``application/json`` refused after inference; every failure a 400
      with Python noise in the message (never 500); no ``x-request-id``; 1 replica running 1 request at a time;
    * ``serverless``: the router's ``/hf-inference/models/<id>`` (+ chat), the legacy ``/models/<id>`` and the
      Hub lookups;
    * ``tgi``: ``POST /v1/chat/completions``, ``GET /health``, ``/metrics``; batching up to 8.

    Capacity: ``replicas`` x ``replica_concurrency`` requests run at once, more wait in one FIFO queue, and a
    request whose client has gone still runs to its end (as in the real container). ``max_batch`` turns on
    batching instead (``batch_alpha`` above). None means the profile's default: unlimited for ``all`` and
    ``serverless``, 1 x 1 for ``endpoint``, 1 replica batching 8 for ``tgi``.

    Faults, each a probability per model request drawn from the seeded generator: ``fail_rate`` (500, or a 400
    in the endpoint profile), ``reset_rate`` (connection reset after the work), ``truncate_rate`` (a 200 whose
    body is cut short of its Content-Length), ``proxy_error_rate`` (an HTML 502 or 504 from a proxy, at once),
    ``garble_rate`` (a 200 that is not JSON), ``hang_rate`` (no answer until the client gives up). ``credits``
    answers 402 once that many captions were admitted, and to every request after. ``legacy_gone`` answers 410
    on the retired ``/models/<id>`` route.

    The chat route answers each prompt apart (``batchcap.emulator.answers``: the caption and a tag of the prompt),
    and JSON matching the schema a ``response_format`` asks for; ``invalid_json_rate`` of the (image, prompt)
    pairs get an invalid JSON reply the first time they are asked (seeded by ``seed``).

    ``answer_shape`` is what an image-to-text route returns on success: the pipeline's ``list``
    (``[{"generated_text": ...}]``), a bare ``object`` (older servers, many custom handlers) or a bare JSON
    ``string`` (a custom handler that returns its caption as is: a systematic bad response).

    ``window_quota`` requests per ``window_seconds`` is a fixed-window limit counted on epoch-aligned windows of
    the wall clock (LiteLLM's ``rpm: 20`` counts per calendar minute): the next request in a spent window gets
    a 429 until the window ends. ``window_headers`` says how it tells (``WindowHeaders``; on every answer for
    ``ietf`` and ``openai``); 0 is a limit that refuses everything ("429 forever").

    ``space`` (also served by ``all``) is a Gradio 6.31 app, as measured in issue 20: ``GET /config``, ``GET
    /gradio_api/info``, ``POST /gradio_api/upload``, ``POST /gradio_api/call/<api>`` -> ``{"event_id"}``, ``GET
    /gradio_api/call/<api>/<event_id>`` (server-sent events, HTTP 200, readable once) and the ``queue/join`` +
    ``queue/data`` pair that ``gradio_client`` uses. Its knobs: ``space_apis`` (endpoints taking ``(image,
    prompt)`` and returning text), ``space_concurrency`` calls at once, ``space_queue_size`` waiting at most (503
    "Queue is full" beyond; None: no limit), a ZeroGPU quota of ``space_quota`` GPU seconds (None: none) charged
    ``space_gpu_duration`` per call and back ``space_quota_reset`` seconds after it ran out, and a heartbeat every
    ``space_heartbeat`` seconds. ``fail_rate`` makes the app raise (an ``error`` event with ``null``, as with
    Gradio's default ``show_error=False``).

    Body limits (413 with TGI's text): ``chat_max_body_bytes`` on the chat routes (TGI's 2,000,000 by default),
    ``endpoint_max_body_bytes`` on the Endpoint routes (None: ``max_body_bytes``), ``max_body_bytes`` elsewhere.

    ``models``: the ids the router serves on ``/hf-inference/models/<id>`` (and the legacy ``/models/<id>``);
    any other id is answered 404 ``Not Found`` as the router answers it (protocol.md section 2.1), so a typo in
    ``--model`` fails here as it would there. The demo's id by default.

    Money (issue 18): the chat route reports ``usage`` as a VLM counts it (``billing``: image tokens from the
    decoded size, text tokens from the prompt and the caption, the caption cut at ``max_tokens`` with
    ``finish_reason: "length"``). On the router's profiles (``all``, ``serverless``) ``providers`` serve it: the
    model suffix picks one, ``x-inference-provider`` names it, ``GET /v1/models`` lists each with its
    ``pricing`` (none for a provider without prices), and the request log sums what was billed. ``tgi`` serves
    one model, names no provider and lists no prices, as TGI does.
    """

    auth: Literal["public", "protected"] = "public"
    tokens: tuple[str, ...] = field(default=(DEFAULT_TOKEN,), repr=False)
    rate: float | None = None
    burst: int | None = None
    retry_after: bool = False
    cold_start: float = 0.0
    cold_start_status: int = 503
    latency: float = 0.0
    latency_jitter: float = 0.0
    latency_dist: LatencyDist = "fixed"
    fail_rate: float = 0.0
    seed: int = 0
    max_body_bytes: int = 20 * 1024 * 1024
    model_id: str = DEFAULT_MODEL_ID
    models: tuple[str, ...] = (DEFAULT_MODEL_ID,)
    name: str = "emulator"
    profile: Profile = "all"
    replicas: int | None = None
    replica_concurrency: int | None = None
    max_batch: int | None = None
    batch_alpha: float = 0.1
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    proxy_error_rate: float = 0.0
    garble_rate: float = 0.0
    hang_rate: float = 0.0
    credits: int | None = None
    legacy_gone: bool = False
    chat_max_body_bytes: int = TGI_PAYLOAD_LIMIT
    endpoint_max_body_bytes: int | None = None
    answer_shape: AnswerShape = "list"
    window_quota: int | None = None
    window_seconds: float = 60.0
    window_headers: WindowHeaders = "none"
    invalid_json_rate: float = 0.0
    space_apis: tuple[str, ...] = ("caption",)
    space_concurrency: int = 1
    space_queue_size: int | None = None
    space_quota: float | None = None
    space_gpu_duration: float = 60.0
    space_quota_reset: float = 588.0
    space_heartbeat: float = 15.0
    providers: tuple[ProviderPrice, ...] = DEFAULT_PROVIDERS

    def __post_init__(self) -> None:
        def bad(what: str, flag: str) -> ConfigError:
            return ConfigError(f"emulator {what}; pass a valid {flag} or change EmulatorSettings")

        if self.auth not in ("public", "protected"):
            raise bad(f"auth must be 'public' or 'protected' (got {self.auth!r})", "--auth")
        if self.auth == "protected" and not any(self.tokens):
            raise bad("auth='protected' needs at least one token", "--token-file")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise bad(f"rate must be a finite number > 0, or None for unlimited (got {self.rate})", "--rate")
        if self.burst is not None and self.burst < 1:
            raise bad(f"burst must be >= 1 (got {self.burst})", "--burst")
        for name in ("cold_start", "latency", "latency_jitter"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise bad(f"{name} must be a finite number >= 0 (got {value})", "--" + name.replace("_", "-"))
        if self.cold_start_status not in (502, 503):
            raise bad(
                f"cold_start_status must be 502 or 503 (got {self.cold_start_status})", "--cold-start-status"
            )
        if self.latency_dist not in ("fixed", "uniform", "exponential"):
            raise bad(
                f"latency_dist must be fixed, uniform or exponential (got {self.latency_dist!r})",
                "--latency-dist",
            )
        for name in FAULT_KNOBS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise bad(f"{name} must be within [0, 1] (got {value})", "--" + name.replace("_", "-"))
        total = sum(getattr(self, name) for name in FAULT_KNOBS)
        if total > 1.0 + 1e-9:
            raise ConfigError(
                f"emulator fault rates add up to {total:g}, more than 1; lower --fail-rate and the --*-rate flags"
            )
        for name in ("max_body_bytes", "chat_max_body_bytes", "endpoint_max_body_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(f"{name} must be >= 1 (got {value})", "--max-body-mb")
        if self.profile not in PROFILES:
            raise bad(f"profile must be one of {', '.join(PROFILES)} (got {self.profile!r})", "--profile")
        for name in ("replicas", "replica_concurrency", "max_batch", "credits"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < (0 if name == "credits" else 1)):
                low = 0 if name == "credits" else 1
                raise bad(f"{name} must be >= {low} (got {value})", "--" + name.replace("_", "-"))
        if self.answer_shape not in ("list", "object", "string"):
            raise bad(f"answer_shape must be list, object or string (got {self.answer_shape!r})", "--answer-shape")
        if self.window_quota is not None and (isinstance(self.window_quota, bool) or self.window_quota < 0):
            raise bad(f"window_quota must be >= 0 (got {self.window_quota})", "--window-quota")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise bad(f"window_seconds must be a finite number > 0 (got {self.window_seconds})", "--window-seconds")
        if self.window_headers not in WINDOW_HEADERS:
            raise bad(f"window_headers must be one of {', '.join(WINDOW_HEADERS)} (got {self.window_headers!r})",
                      "--window-headers")
        if not 0.0 <= self.invalid_json_rate <= 1.0:
            raise bad(f"invalid_json_rate must be within [0, 1] (got {self.invalid_json_rate})",
                      "--invalid-json-rate")
        if isinstance(self.models, str) or not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise bad(f"models must be one or more model ids (got {self.models!r})", "--models")
        if not self.space_apis or not all(a and a.isidentifier() for a in self.space_apis):
            raise bad(f"space_apis must be endpoint names such as caption (got {self.space_apis!r})", "--space-apis")
        if self.space_concurrency < 1 or (self.space_queue_size is not None and self.space_queue_size < 0):
            raise bad("space_concurrency must be >= 1 and space_queue_size >= 0", "--space-concurrency")
        for name in ("space_quota", "space_gpu_duration", "space_quota_reset", "space_heartbeat"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise bad(f"{name} must be a finite number >= 0 (got {value})", "--" + name.replace("_", "-"))
        if self.space_heartbeat <= 0 or self.space_gpu_duration <= 0:
            raise bad("space_heartbeat and space_gpu_duration must be > 0", "--space-heartbeat")
        for p in self.providers:
            if not isinstance(p, ProviderPrice) or not p.name or any(
                x is not None and not (math.isfinite(x) and x >= 0) for x in (p.input, p.output)
            ):
                raise bad(f"providers must be named, with prices >= 0 USD per 1M tokens (got {p!r})", "--provider")
        if not (self.batch_alpha >= 0 and math.isfinite(self.batch_alpha)):
            raise bad(f"batch_alpha must be a finite number >= 0 (got {self.batch_alpha})", "--batch-alpha")

    @property
    def capacity(self) -> Capacity | None:
        """The model's capacity in force (profile defaults filled in), or None for unlimited."""
        replicas, slots, batch = self.replicas, self.replica_concurrency, self.max_batch
        if self.profile == "endpoint":
            replicas, slots = replicas or 1, slots or 1
        elif self.profile == "tgi" and slots is None:
            batch = batch or 8
        if replicas is None and slots is None and batch is None:
            return None
        if batch is not None:
            return Capacity(replicas or 1, batch, self.batch_alpha)
        return Capacity(replicas or 1, slots or 1, 0.0)

    def body_limit(self, kind: str) -> int:
        """The body limit of one route kind (``chat``, ``endpoint``, ``serverless``...), in bytes."""
        if kind == "chat":
            return self.chat_max_body_bytes
        if kind == "endpoint" and self.endpoint_max_body_bytes is not None:
            return self.endpoint_max_body_bytes
        return self.max_body_bytes

    @property
    def effective_burst(self) -> int:
        """The bucket size in force: the explicit ``burst`` or ``max(1, int(rate))``."""
        if self.burst is not None:
            return self.burst
        return max(1, int(self.rate or 1))

    def describe(self) -> str:
        """One line for logs and the ``serve`` banner; never shows a token."""
        rate = "unlimited" if self.rate is None else f"{self.rate:g}/s burst={self.effective_burst}"
        jitter = f"±{self.latency_jitter:g}" if self.latency_jitter else ""
        capacity = self.capacity
        if capacity is None:
            shown = "unlimited"
        elif capacity.alpha > 0:
            shown = f"{capacity.replicas}x batch {capacity.slots} (alpha={capacity.alpha:g})"
        else:
            shown = f"{capacity.replicas}x{capacity.slots}"
        faults = ", ".join(f"{name}={getattr(self, name):g}" for name in FAULT_KNOBS[1:] if getattr(self, name))
        extra = (f", {faults}" if faults else "") + (f", credits={self.credits}" if self.credits is not None else "")
        extra += ", legacy_gone" if self.legacy_gone else ""
        if self.window_quota is not None:
            extra += f", window={self.window_quota}/{self.window_seconds:g}s headers={self.window_headers}"
        extra += f", models={','.join(self.models)}"
        if self.profile in ("space", "all"):
            queue = "unbounded" if self.space_queue_size is None else str(self.space_queue_size)
            quota = "none" if self.space_quota is None else f"{self.space_quota:g}s"
            extra += f", space: {self.space_concurrency} at once, queue {queue}, GPU quota {quota}"
        return (
            f"auth={self.auth}, profile={self.profile}, capacity={shown}, rate={rate}, "
            f"retry_after={'on' if self.retry_after else 'off'}, "
            f"cold_start={self.cold_start:g}s/{self.cold_start_status}, "
            f"latency={self.latency:g}s{jitter} {self.latency_dist}, fail_rate={self.fail_rate:g}{extra}, "
            f"seed={self.seed}"
        )
