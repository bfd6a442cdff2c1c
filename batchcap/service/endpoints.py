"""An Inference Endpoint's own lifecycle around a run: look it up, wake it, wait until healthy, put it to sleep.

    api = EndpointsAPI("https://api.endpoints.huggingface.cloud/v2", token=token)
    async with api, EndpointLifecycle(api, EndpointName.parse("acme/captioner"), after="pause") as info:
        ...   # caption at info.url (status.url), now running and healthy: batchcap.run.run_with_endpoint
    # paused again here, also when the run raised or was cancelled (SIGTERM, Ctrl-C)

A paused or scaled-to-zero Endpoint is resumed, then polled (``GET /endpoint/{ns}/{name}``) until its state is
``running``, its ``status.url`` is set and ``GET {url}{healthRoute}`` answers 200, as huggingface_hub's
``InferenceEndpoint.wait()`` does; a progress callback hears ``waking acme/captioner: initializing, 2 min``. The
exit pauses (or scales to zero) inside a shielded cancel scope, so an interrupted run still stops the billing.

The token goes to two hosts only, the management API's and the Endpoint's own (``status.url``), each request
checked; redirects are never followed. aiohttp errors are translated by ``client._transport_error``, the one
translation point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
import orjson

from batchcap.errors import (
    APIError,
    AuthError,
    BadResponse,
    ConfigError,
    ModelLoading,
    PermanentError,
    TransportError,
    WrongTarget,
)
from batchcap.service.auth import Secret
from batchcap.service.client import _CLIENT_ERRORS, _transport_error
from batchcap.service.protocols import classify
from batchcap.service.settings import DEFAULT_ENDPOINTS_API, AfterRun, parse_endpoint_name
from batchcap.types import Clock, Sleep
from batchcap.version import __version__

__all__ = [
    "DEFAULT_ENDPOINTS_API",
    "AfterRun",
    "EndpointInfo",
    "EndpointLifecycle",
    "EndpointName",
    "EndpointsAPI",
    "OnProgress",
    "wait_until_ready",
]

OnProgress = Callable[[str], None]

#: States a resume wakes from; "failed"/"updateFailed" need a person, the others are on their way.
_SAY_EVERY = 30.0
_FIRST_POLL = 0.5
_ASLEEP = frozenset({"paused", "scaledToZero"})
_BROKEN = frozenset({"failed", "updateFailed"})


@dataclass(frozen=True, slots=True)
class EndpointName:
    """``NAMESPACE/NAME`` as ``--endpoint-name`` spells it."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> EndpointName:
        return cls(*parse_endpoint_name(spec))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What the management API says about one Endpoint (protocol.md section 9)."""

    name: str
    state: str
    url: str | None
    health_route: str
    message: str
    ready_replicas: int
    target_replicas: int

    @classmethod
    def from_json(cls, raw: Any, *, host: str) -> EndpointInfo:
        """Raise ``BadResponse`` unless ``raw`` has the fields batchcap relies on."""
        try:
            status = raw["status"]
            url = status.get("url") or None
            info = cls(
                name=str(raw["name"]),
                state=str(status["state"]),
                url=str(url) if url else None,
                health_route=str(raw.get("healthRoute") or "/health"),
                message=str(status.get("message") or ""),
                ready_replicas=int(status.get("readyReplica") or 0),
                target_replicas=int(status.get("targetReplica") or 0),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BadResponse(f"{host} answered an Endpoint description without name/status.state") from None
        return info

    @property
    def health_url(self) -> str | None:
        if self.url is None:
            return None
        return f"{self.url.rstrip('/')}/{self.health_route.lstrip('/')}"


class EndpointsAPI:
    """The management API over one aiohttp session (``async with``). Each call is one HTTP request."""

    def __init__(self, api_base: str = DEFAULT_ENDPOINTS_API, *, token: Secret | None, timeout: float = 30.0) -> None:
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--endpoints-api must be an http(s) URL (got {api_base!r})")
        if parts.username or parts.password:
            raise ConfigError("--endpoints-api must not carry credentials in the URL; use HF_TOKEN or --token-file")
        if token is None:
            raise ConfigError(
                "--endpoint-name needs a token: the Endpoints management API always requires one "
                "(set HF_TOKEN, run `hf auth login`, or pass --token-file)"
            )
        self.api_base = api_base.rstrip("/")
        self._api_origin = _origin(api_base)
        self._token = token
        self._endpoint_origin: tuple[str, str, int] | None = None
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"batchcap/{__version__}"},
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 30.0)),
            raise_for_status=False,
            trust_env=False,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, name: EndpointName, action: str = "") -> str:
        path = f"/endpoint/{quote(name.namespace, safe='')}/{quote(name.name, safe='')}"
        return self.api_base + path + (f"/{action}" if action else "")

    async def get(self, name: EndpointName) -> EndpointInfo:
        return await self._describe("GET", name)

    async def resume(self, name: EndpointName) -> EndpointInfo:
        """Resume; an Endpoint that is already running is not an error (the API's 400 is read as such)."""
        try:
            return await self._describe("POST", name, "resume")
        except APIError as exc:
            if exc.status == 400 and "already running" in exc.message:
                return await self.get(name)
            raise

    async def pause(self, name: EndpointName) -> EndpointInfo:
        return await self._describe("POST", name, "pause")

    async def scale_to_zero(self, name: EndpointName) -> EndpointInfo:
        return await self._describe("POST", name, "scale-to-zero")

    async def healthy(self, info: EndpointInfo) -> bool:
        """``GET {url}{healthRoute}`` answers 200. Transport errors and 5xx mean not yet; 401/403 raise."""
        url = info.health_url
        if url is None:
            return False
        self._endpoint_origin = _origin(url)
        try:
            status, _, _ = await self._request("GET", url)
        except TransportError:
            return False
        if status in (401, 403):
            raise AuthError(
                f"the Endpoint {info.name} refused the token on its health route (HTTP {status}); "
                "use a token of a member of the Endpoint's organization",
                status=status,
            )
        return status == 200

    async def _describe(self, method: str, name: EndpointName, action: str = "") -> EndpointInfo:
        url = self._url(name, action)
        status, headers, body = await self._request(method, url)
        host = urlsplit(url).netloc
        if 200 <= status < 300:
            try:
                raw = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise BadResponse(f"{host} answered {method} {action or 'lookup'} with non-JSON") from None
            return EndpointInfo.from_json(raw, host=host)
        error = classify(status, headers, body, url_host=host)
        if isinstance(error, AuthError):
            error.message = (
                f"the Endpoints management API refused the token (HTTP {status}); it needs a token with access "
                f"to {name.namespace}'s Endpoints (a fine-grained token needs 'Inference Endpoints' rights)"
            )
        elif status == 404:
            error = WrongTarget(
                f"no Endpoint {name} at {self.api_base} (HTTP 404); check --endpoint-name (NAMESPACE/NAME)",
                status=status,
            )
        elif 400 <= status < 500 and status != 429:
            error = PermanentError(error.message, status=status, request_id=error.request_id)
        error.message = error.message.replace(self._token.reveal(), "***")
        error.args = (error.message,)
        raise error

    async def _request(self, method: str, url: str) -> tuple[int, Any, bytes]:
        assert self._session is not None, "use `async with EndpointsAPI(...)`"
        origin = _origin(url)
        if origin != self._api_origin and origin != self._endpoint_origin:
            raise ConfigError(f"refusing to send the token to {urlsplit(url).netloc}: it is not the Endpoint's host")
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        host = urlsplit(url).netloc
        try:
            async with self._session.request(method, url, headers=headers, allow_redirects=False) as resp:
                return resp.status, resp.headers, await resp.read()
        except _CLIENT_ERRORS as exc:
            raise _transport_error(exc, host, self.timeout) from None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _elapsed(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


async def wait_until_ready(
    api: EndpointsAPI,
    name: EndpointName,
    *,
    max_wait: float = 1800.0,
    poll: float = 5.0,
    progress: OnProgress | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = anyio.sleep,
) -> EndpointInfo:
    """Resume ``name`` if it sleeps, then poll until running with a URL and a healthy health route.

    Polls after 0.5 s, then twice as long each time up to ``poll`` seconds (huggingface_hub polls every 5 s).

    Raises ``WrongTarget`` if the Endpoint is failed (a person must look), ``ModelLoading`` after ``max_wait``
    seconds (``max_wait``) without becoming ready (run again later: nothing was captioned yet), and whatever the API raises.
    """
    started = clock()
    interval = min(poll, _FIRST_POLL)
    said = ("", 0.0)  # the state last reported, and when: a line per change, and one per _SAY_EVERY
    info = await api.get(name)
    if info.state in _ASLEEP:
        if progress:
            progress(f"waking {name}: {info.state}, resuming")
        info = await api.resume(name)
    while True:
        if info.state in _BROKEN:
            raise WrongTarget(
                f"Endpoint {name} is {info.state}" + (f" ({info.message})" if info.message else "")
                + "; look at its logs on the Endpoints page, fix it, then run again"
            )
        if info.state == "running" and info.url and await api.healthy(info):
            if progress:
                progress(f"{name} is running at {info.url} ({_elapsed(clock() - started)} to wake)")
            return info
        waited = clock() - started
        if waited >= max_wait:
            raise ModelLoading(
                f"Endpoint {name} is still {info.state} after {_elapsed(waited)}; run the same command later, "
                "or raise --max-wait",
                status=None,
            )
        if progress and (info.state != said[0] or waited - said[1] >= _SAY_EVERY):
            said = (info.state, waited)
            progress(f"waking {name}: {info.state}, {_elapsed(waited)}")
        await sleep(min(interval, max(0.0, max_wait - waited)))
        interval = min(poll, interval * 2)  # 0.5, 1, 2, 4, 5, 5 ...: a warm Endpoint is seen at once
        info = await api.get(name)
        if info.state in _ASLEEP:  # paused again by someone else, or scaled to zero meanwhile
            info = await api.resume(name)


class EndpointLifecycle:
    """``async with``: ready on entry (returns the ``EndpointInfo``); paused or scaled to zero on exit if asked.

    The exit runs shielded from cancellation with its own time bound (``exit_timeout``), so Ctrl-C, SIGTERM or
    an abort still put the Endpoint to sleep. A failure to do so is raised when the body succeeded (the user
    must know it still bills), and otherwise reported through ``progress`` so the body's own error stays first.
    """

    def __init__(
        self,
        api: EndpointsAPI,
        name: EndpointName,
        *,
        after: AfterRun | None = None,
        max_wait: float = 1800.0,
        poll: float = 5.0,
        exit_timeout: float = 60.0,
        progress: OnProgress | None = None,
    ) -> None:
        self.api = api
        self.name = name
        self.after = after
        self.max_wait = max_wait
        self.poll = poll
        self.exit_timeout = exit_timeout
        self.progress = progress
        self.slept: EndpointInfo | None = None  #: what the exit's pause/scale-to-zero returned

    async def __aenter__(self) -> EndpointInfo:
        return await self.wake()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.sleep(raise_errors=et is None)

    async def wake(self) -> EndpointInfo:
        """Resume if asleep and wait until ready; on failure (or cancellation) put it back to sleep first."""
        try:
            return await wait_until_ready(
                self.api, self.name, max_wait=self.max_wait, poll=self.poll, progress=self.progress
            )
        except BaseException:
            await self.sleep(raise_errors=False)  # woken but never used: do not leave it billing
            raise

    async def sleep(self, *, raise_errors: bool) -> None:
        """Pause or scale to zero as ``after`` says (nothing if None), shielded and bounded in time."""
        if self.after is None:
            return
        verb = "pause" if self.after == "pause" else "scale to zero"
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.exit_timeout) as scope:
            try:
                if self.after == "pause":
                    self.slept = await self.api.pause(self.name)
                else:
                    self.slept = await self.api.scale_to_zero(self.name)
            except APIError as exc:
                message = f"could not {verb} Endpoint {self.name}: {exc.message}; it may still bill: {verb} it by hand"
                if raise_errors:
                    raise type(exc)(message, status=exc.status) from None
                if self.progress:
                    self.progress(message)
                return
        if scope.cancelled_caught:
            message = f"no answer while trying to {verb} Endpoint {self.name}; it may still bill: {verb} it by hand"
            if raise_errors:
                raise TransportError(message)
            if self.progress:
                self.progress(message)
        elif self.progress and self.slept is not None:
            self.progress(f"Endpoint {self.name} is {self.slept.state}")
