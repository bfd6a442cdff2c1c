"""The Inference Endpoints management API, emulated: one Endpoint's states, and the gate in front of its model.

Two small aiohttp apps share one :class:`Lifecycle`:

* the **management API** (``{api_url}/endpoint/{ns}/{name}``, ``.../resume``, ``.../pause``, ``.../scale-to-zero``),
  the JSON shape of protocol.md section 9 plus the fields huggingface_hub reads (``model``, ``createdAt``), so
  ``HfApi().get_inference_endpoint(...).resume().wait()`` works against it;
* the **gate**, the Endpoint's own host (``status.url``): a reverse proxy to a captioning emulator
  (:func:`batchcap.emulator.start_emulator`) that forwards only while the state is ``running`` and answers 503
  otherwise. A request to a ``scaledToZero`` Endpoint wakes it (503 meanwhile, or held up to
  ``X-Scale-Up-Timeout`` seconds), as the real proxy does; a ``paused`` one stays asleep until resumed.

States move with the clock: ``resume`` -> ``pending`` for ``pending_s`` -> ``initializing`` for ``initializing_s``
-> ``running``. Every management call is logged with whether it carried a token and whether it was the right one;
calls without the right token get 401. The gate was chosen over a hook in the captioning app so this module
needs no change there.

    async with await start_managed_endpoint(ManagedEndpointSettings(), upstream=emu.url) as m:
        m.api_url       # http://127.0.0.1:PORT/v2  (pass as --endpoints-api)
        m.endpoint_url  # http://127.0.0.1:PORT2    (status.url)
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

import aiohttp
from aiohttp import web

from batchcap.emulator.settings import DEFAULT_MODEL_ID, DEFAULT_TOKEN
from batchcap.errors import ConfigError
from batchcap.types import Clock

__all__ = [
    "EndpointState",
    "GateEntry",
    "Lifecycle",
    "ManagedEndpointSettings",
    "ManagementEntry",
    "RunningManagedEndpoint",
    "start_managed_endpoint",
]

EndpointState = Literal[
    "pending", "initializing", "updating", "updateFailed", "running", "paused", "failed", "scaledToZero"
]


@dataclass(frozen=True, slots=True)
class ManagedEndpointSettings:
    """One emulated Endpoint. ``state`` is where it starts; the two durations are the cold start."""

    namespace: str = "acme"
    name: str = "captioner"
    state: EndpointState = "paused"
    pending_s: float = 0.3
    initializing_s: float = 0.5
    health_route: str = "/health"
    model_id: str = DEFAULT_MODEL_ID
    min_replica: int = 0
    max_replica: int = 1
    scale_to_zero_timeout: int | None = 15  #: minutes, as the real API counts them
    tokens: tuple[str, ...] = field(default=(DEFAULT_TOKEN,), repr=False)

    def __post_init__(self) -> None:
        for name in ("pending_s", "initializing_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"ManagedEndpointSettings.{name} must be a finite number >= 0 (got {value})")
        if self.state not in ("paused", "scaledToZero", "running", "failed"):
            raise ConfigError(f"an emulated Endpoint starts paused, scaledToZero, running or failed (got {self.state})")
        if not any(self.tokens):
            raise ConfigError("the management API always needs a token: give ManagedEndpointSettings.tokens")


class Lifecycle:
    """The state machine, with the clock passed in: a settled state, or a wake-up under way since ``_since``."""

    __slots__ = ("_clock", "_settled", "_since", "initializing_s", "pending_s", "running_since", "transitions")

    def __init__(self, settings: ManagedEndpointSettings, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.pending_s = settings.pending_s
        self.initializing_s = settings.initializing_s
        self._settled: EndpointState | None = settings.state  # None while waking
        self._since = clock()
        self.running_since: float | None = self._since if settings.state == "running" else None
        #: (clock time, state) each time the state changed, including the derived pending -> running steps.
        self.transitions: list[tuple[float, EndpointState]] = [(self._since, settings.state)]

    @property
    def state(self) -> EndpointState:
        now = self._clock()
        if self._settled is not None:
            return self._settled
        woke = now - self._since
        if woke < self.pending_s:
            return self._note("pending", self._since)
        if woke < self.pending_s + self.initializing_s:
            return self._note("initializing", self._since + self.pending_s)
        self._settled = "running"
        self.running_since = self._since + self.pending_s + self.initializing_s
        return self._note("running", self.running_since)

    def _note(self, state: EndpointState, at: float) -> EndpointState:
        if self.transitions[-1][1] != state:
            self.transitions.append((at, state))
        return state

    def eta(self) -> float | None:
        """Seconds until a wake-up under way reaches running (0 if running); None when asleep."""
        state = self.state
        if state == "running":
            return 0.0
        if self._settled is not None:
            return None
        return max(0.0, self._since + self.pending_s + self.initializing_s - self._clock())

    def resume(self) -> bool:
        """Start waking; False when already running (the API's 400). Waking again is a no-op."""
        state = self.state
        if state == "running":
            return False
        if self._settled is not None:  # paused, scaledToZero, failed
            self._wake()
        return True

    def wake_on_request(self) -> None:
        """A request reached a scaled-to-zero Endpoint: it starts a replica (a paused one does not)."""
        if self.state == "scaledToZero":
            self._wake()

    def pause(self) -> None:
        self._settle("paused")

    def scale_to_zero(self) -> None:
        self._settle("scaledToZero")

    def _wake(self) -> None:
        self._settled = None
        self._since = self._clock()
        self.running_since = None
        self.state  # noqa: B018 - records the transition to pending

    def _settle(self, state: EndpointState) -> None:
        self.state  # noqa: B018 - a wake-up that finished meanwhile is recorded first
        self._settled = state
        self.running_since = None
        self._note(state, self._clock())


class ManagementEntry(NamedTuple):
    """One management API call. No token is kept: only whether one came and whether it was right."""

    t: float
    method: str
    action: str  #: "get", "resume", "pause", "scale-to-zero", or "other"
    status: int
    auth_present: bool
    auth_ok: bool


class GateEntry(NamedTuple):
    """One request to the Endpoint's host: the state it found and what it was answered."""

    t: float
    method: str
    path: str
    state: EndpointState
    status: int
    forwarded: bool
    auth_present: bool


_SHARED: web.AppKey[_Shared] = web.AppKey("managed_endpoint")


@dataclass(slots=True)
class _Shared:
    settings: ManagedEndpointSettings
    lifecycle: Lifecycle
    clock: Clock
    upstream: str
    endpoint_url: str = ""
    created: str = field(default_factory=lambda: _iso(time.time()))
    api_log: list[ManagementEntry] = field(default_factory=list)
    gate_log: list[GateEntry] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    def describe(self) -> dict[str, Any]:
        """The endpoint as ``GET /v2/endpoint/{ns}/{name}`` returns it (protocol.md section 9)."""
        s = self.settings
        state = self.lifecycle.state
        ready = 1 if state == "running" else 0
        target = 1 if state in ("running", "pending", "initializing") else 0
        return {
            "name": s.name,
            "type": "protected",
            "accountId": None,
            "healthRoute": s.health_route,
            "provider": {"vendor": "aws", "region": "us-east-1"},
            "compute": {
                "accelerator": "gpu",
                "instanceType": "nvidia-t4",
                "instanceSize": "x1",
                "scaling": {
                    "minReplica": s.min_replica,
                    "maxReplica": s.max_replica,
                    "scaleToZeroTimeout": s.scale_to_zero_timeout,
                },
            },
            "model": {
                "repository": s.model_id,
                "revision": "main",
                "task": "image-to-text",
                "framework": "pytorch",
                "image": {"huggingface": {}},
            },
            "status": {
                "state": state,
                "url": self.endpoint_url,
                "message": _MESSAGES[state],
                "readyReplica": ready,
                "targetReplica": target,
                "createdAt": self.created,
                "updatedAt": _iso(time.time()),
                "createdBy": {"id": "0", "name": s.namespace},
                "updatedBy": {"id": "0", "name": s.namespace},
            },
        }


_MESSAGES: dict[EndpointState, str] = {
    "pending": "Endpoint is waiting for a replica",
    "initializing": "Endpoint is initializing",
    "updating": "Endpoint is updating",
    "updateFailed": "Endpoint failed to update",
    "running": "Endpoint is running",
    "paused": "Endpoint is paused",
    "failed": "Endpoint failed to start",
    "scaledToZero": "Endpoint is scaled to zero",
}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _token_state(request: web.Request, settings: ManagedEndpointSettings) -> tuple[bool, bool]:
    header = request.headers.get("Authorization", "")
    present = bool(header)
    token = header[7:] if header.startswith("Bearer ") else ""
    return present, bool(token) and token in settings.tokens


async def _management(request: web.Request) -> web.StreamResponse:
    shared = request.app[_SHARED]
    s, life = shared.settings, shared.lifecycle
    action = request.match_info.get("action", "get")
    present, ok = _token_state(request, s)
    status = 200
    try:
        if not ok:
            status = 401
            return _json(401, {"error": "Invalid credentials in Authorization header" if present
                               else "You must be authenticated to access this resource"})
        if (request.match_info["ns"], request.match_info["name"]) != (s.namespace, s.name):
            status = 404
            return _json(404, {"error": f"Endpoint {request.match_info['ns']}/{request.match_info['name']} not found"})
        if action == "resume" and not life.resume():
            status = 400
            return _json(400, {"error": "Bad Request: Endpoint is already running"})
        if action == "pause":
            life.pause()
        elif action == "scale-to-zero":
            life.scale_to_zero()
        return _json(200, shared.describe())
    finally:
        shared.api_log.append(ManagementEntry(shared.clock(), request.method, action, status, present, ok))


_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})
_PASS_BACK = ("Content-Type", "Content-Encoding", "x-request-id", "Retry-After", "RateLimit", "RateLimit-Policy")


async def _gate(request: web.Request) -> web.StreamResponse:
    """Forward to the model while running; 503 otherwise (a scaled-to-zero Endpoint wakes on it)."""
    shared = request.app[_SHARED]
    life = shared.lifecycle
    life.wake_on_request()
    state = life.state
    if state != "running" and (hold := _scale_up_timeout(request)) > 0:
        eta = life.eta()  # derived from the clock: there is no event to wait on, only a known time
        if eta is not None:
            await asyncio.sleep(min(eta, hold) + 0.001)
    body = await request.read()
    state = life.state
    present = "Authorization" in request.headers
    if state != "running":
        shared.gate_log.append(GateEntry(shared.clock(), request.method, request.path, state, 503, False, present))
        return _json(503, {"error": f"Service Unavailable: endpoint is {state}"})
    assert shared.session is not None
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    async with shared.session.request(
        request.method, shared.upstream + request.path_qs, data=body, headers=headers, allow_redirects=False
    ) as up:
        data = await up.read()
        answer = web.Response(status=up.status, body=data)
        for name in _PASS_BACK:
            if name in up.headers:
                answer.headers[name] = up.headers[name]
    shared.gate_log.append(GateEntry(shared.clock(), request.method, request.path, state, up.status, True, present))
    return answer


def _scale_up_timeout(request: web.Request) -> float:
    try:
        return max(0.0, min(float(request.headers.get("X-Scale-Up-Timeout", "0")), 600.0))
    except ValueError:
        return 0.0


def make_management_app(shared: _Shared) -> web.Application:
    """The management API routes under ``/v2``."""
    app = web.Application()
    app[_SHARED] = shared
    app.router.add_get("/v2/endpoint/{ns}/{name}", _management)
    app.router.add_post("/v2/endpoint/{ns}/{name}/{action:resume|pause|scale-to-zero}", _management)
    return app


def make_gate_app(shared: _Shared) -> web.Application:
    """The Endpoint's own host: every path and method, forwarded while running."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_SHARED] = shared
    app.router.add_route("*", "/{tail:.*}", _gate)
    return app


class RunningManagedEndpoint:
    """The management API and the gate on two loopback ports; ``async with`` or :meth:`close` stops both."""

    def __init__(self, shared: _Shared, runners: list[web.AppRunner], api_url: str) -> None:
        self._shared = shared
        self._runners = runners
        self.api_url = api_url
        self.endpoint_url = shared.endpoint_url
        self.settings = shared.settings

    @property
    def lifecycle(self) -> Lifecycle:
        return self._shared.lifecycle

    @property
    def state(self) -> EndpointState:
        return self._shared.lifecycle.state

    @property
    def api_log(self) -> list[ManagementEntry]:
        return self._shared.api_log

    @property
    def gate_log(self) -> list[GateEntry]:
        return self._shared.gate_log

    async def close(self) -> None:
        """Stop both servers and the gate's client session; safe to call twice."""
        while self._runners:
            await self._runners.pop().cleanup()
        if self._shared.session is not None:
            await self._shared.session.close()
            self._shared.session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        s = self.settings
        return f"<RunningManagedEndpoint {s.namespace}/{s.name} {self.state} api={self.api_url}>"


async def _serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = next((int(a[1]) for a in runner.addresses if isinstance(a, tuple)), port)
    return runner, f"http://{host}:{bound}"


async def start_managed_endpoint(
    settings: ManagedEndpointSettings | None = None,
    *,
    upstream: str,
    host: str = "127.0.0.1",
    api_port: int = 0,
    endpoint_port: int = 0,
    clock: Clock = time.monotonic,
) -> RunningManagedEndpoint:
    """Serve the management API and the gate to ``upstream`` (a captioning emulator's ``.url``)."""
    settings = settings or ManagedEndpointSettings()
    shared = _Shared(settings, Lifecycle(settings, clock), clock, upstream.rstrip("/"))
    runners: list[web.AppRunner] = []
    try:
        gate_runner, shared.endpoint_url = await _serve(make_gate_app(shared), host, endpoint_port)
        runners.append(gate_runner)
        api_runner, api_root = await _serve(make_management_app(shared), host, api_port)
        runners.append(api_runner)
    except BaseException:
        for r in runners:
            await r.cleanup()
        raise
    shared.session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=300),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        trust_env=False,
    )
    return RunningManagedEndpoint(shared, runners, api_root + "/v2")
