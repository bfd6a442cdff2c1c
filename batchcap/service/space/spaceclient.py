"""``SpaceClient``: caption through a Gradio app (a Hugging Face Space, or any Gradio URL) with the interface of
``CaptionClient``, so the run's Captioner, ``check --probe`` and ``bench`` use it unchanged.

A Space is not one POST. When entered, the client reads the app (``GET /config``, ``GET {prefix}/info``) and plans
the call (``gradio.plan_call``); then each ``caption()`` is one attempt of three requests::

    POST {prefix}/upload   multipart "files": the prepared image  -> ["/tmp/gradio/.../image.jpg"]
    POST {prefix}/call{api} {"data": [FileData, inputs...]}          -> {"event_id": ...}   (503: queue full)
    GET  {prefix}/call{api}/{event_id}   SSE: heartbeat*, generating*, then complete [outputs] or error

Every failure is one class of the error tree: HTTP answers through ``words.classify_http``, ``error`` events
through ``words.classify_error`` (quota, busy, the app's refusal), aiohttp's through the one translation in
``service.client``. The token goes only to a Space's own host (``*.hf.space``), or anywhere the user pointed
``--token-file`` at; it is sent as ``X-HF-Authorization``, as ``gradio_client`` sends it, so the Space's code
does not see it. Redirects are never followed.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
import orjson

from batchcap.errors import APIError, AuthError, BadResponse, TransientError, TransportError, abort_message
from batchcap.models import LoadedImage
from batchcap.service.auth import Secret
from batchcap.service.client import _CLIENT_ERRORS, _LARGE_BODY, Reply, _transport_error
from batchcap.service.protocols.base import Adapter, Built
from batchcap.service.space.address import SpaceSettings, is_space_host
from batchcap.service.space.gradio import (
    AppConfig,
    CallPlan,
    Endpoint,
    choose_endpoint,
    file_data,
    parse_config,
    parse_info,
    plan_call,
    upload_name,
)
from batchcap.service.space.sse import SseDecoder
from batchcap.service.space.words import classify_error, classify_http
from batchcap.types import Sleep
from batchcap.version import __version__

__all__ = ["DEFAULT_CAPACITY", "SpaceAdapter", "SpaceClient"]

#: Calls a Gradio app runs at once unless it says otherwise (``queue(default_concurrency_limit=1)``).
DEFAULT_CAPACITY = 1
#: Attempts at reading the app when it answers with a transient error (a Space waking up, a 503).
_DISCOVERY_ATTEMPTS = 6


@dataclass(frozen=True, slots=True)
class SpaceAdapter:
    """A Space's adapter, for what the run asks of every adapter: the image is the upload's file part, sent as it
    is (``--max-upload-mb`` counts it raw); the call and its answer belong to the plan (``gradio.CallPlan``)."""

    name: str = "space"

    def build(self, image: LoadedImage, prompt: str | None = None) -> Built:
        return Built({"Content-Type": image.mime}, image.data)

    def parse(self, body: bytes) -> str:
        """A Space answers through its event stream (``SpaceClient``), never in one body."""
        raise BadResponse("a Space's caption comes from its event stream, not a response body")


class SpaceClient:
    """Owns one ClientSession; ``caption()`` makes one attempt (upload, call, stream) and raises from the tree."""

    def __init__(
        self,
        settings: SpaceSettings,
        *,
        token: Secret | None = None,
        token_anywhere: bool = False,
        timeout: float = 60.0,
        connections: int = 64,
        discovery_wait: float = 120.0,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.settings = settings
        self.url = settings.url
        self.host = urlsplit(self.url).netloc
        self.timeout = timeout
        self.adapter: Adapter = SpaceAdapter()
        #: the app's concurrency limit for the endpoint, once read (its own if shown, else Gradio's default)
        self.capacity: int | None = None
        self.app: AppConfig | None = None
        self.endpoint: Endpoint | None = None
        self.plan: CallPlan | None = None
        self._connections = connections
        self._discovery_wait = discovery_wait
        self._sleep = sleep
        self._headers = {"User-Agent": f"batchcap/{__version__}"}
        self._token = token if token is not None and (token_anywhere or is_space_host(self.url)) else None
        if self._token is not None:
            self._headers["X-HF-Authorization"] = f"Bearer {self._token.reveal()}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def sends_token(self) -> bool:
        return self._token is not None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, raise_for_status=False, trust_env=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 30.0)),
        )
        try:
            await self.discover()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- reading the app -------------------------------------------------------------------------------------

    async def discover(self) -> CallPlan:
        """Read ``/config`` and ``/info`` and plan the call; transient failures (a Space waking) are retried a
        few times within ``discovery_wait`` seconds. Raises UsageError for an endpoint choice the user must make."""
        started = time.monotonic()
        delay = 1.0
        for attempt in range(1, _DISCOVERY_ATTEMPTS + 1):
            try:
                return await self._discover_once()
            except TransientError as exc:
                hint = getattr(exc, "retry_after", None) or getattr(exc, "estimated_time", None)
                wait = min(float(hint) if hint else delay, 30.0)
                if attempt == _DISCOVERY_ATTEMPTS or time.monotonic() - started + wait > self._discovery_wait:
                    raise
                await self._sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    async def _discover_once(self) -> CallPlan:
        app = parse_config(await self._get_json_body(self.url + "config", "GET /config"))
        info = await self._get_json_body(f"{self._api_base(app)}/info", "GET /info")
        endpoints = parse_info(info)
        where = self.settings.space_id or self.url
        endpoint = choose_endpoint(endpoints, self.settings.api_name, where=where)
        plan = plan_call(endpoint, self.settings.inputs)
        self.app, self.endpoint, self.plan = app, endpoint, plan
        self.capacity = app.concurrency_of(endpoint.api_name) or DEFAULT_CAPACITY
        return plan

    def _api_base(self, app: AppConfig) -> str:
        return self.url.rstrip("/") + app.api_prefix

    async def _get_json_body(self, url: str, what: str) -> bytes:
        status, headers, body = await self._request("GET", url)
        if status != 200:
            error = classify_http(status, headers, body, where=self.host)
            if isinstance(error, AuthError):
                error.message = abort_message(error, where=self.host, has_token=self.sends_token,
                                              token_flag="--token-file", check="--space")
                if not self.sends_token and not is_space_host(self.url):
                    error.message += (" (a token found in HF_TOKEN or the token file goes only to a Space's own "
                                      "*.hf.space host; --token-file sends it to this one)")
            else:
                error.message = f"{what}: {error.message} (is {self.url} a Gradio app?)"
            error.args = (error.message,)
            raise self._scrub(error)
        return body

    # -- one attempt -------------------------------------------------------------------------------------------

    async def server_kind(self) -> str:
        """A Gradio app takes no ``response_format`` (it is never asked one: a Space takes one task)."""
        return "openai"

    async def caption(self, image: LoadedImage, *, adapter: Adapter | None = None, prompt: str | None = None
                      ) -> Reply:
        """Upload, call, read the stream: one attempt. ``adapter`` is accepted for the interface and unused (a
        Space's sampling is its own)."""
        assert self.plan is not None, "use `async with SpaceClient(...)`"
        assert self.app is not None
        base, plan = self._api_base(self.app), self.plan
        started = time.perf_counter()
        path = await self._upload(base, image)
        event_id = await self._call(base, plan, file_data(path, image))
        text = await self._result(base, plan, event_id)
        return Reply(text, time.perf_counter() - started, len(image.data), event_id, 200)

    async def _upload(self, base: str, image: LoadedImage) -> str:
        form = aiohttp.FormData()
        data: bytes | io.BytesIO = image.data if len(image.data) <= _LARGE_BODY else io.BytesIO(image.data)
        form.add_field("files", data, filename=upload_name(image), content_type=image.mime)
        status, headers, body = await self._request("POST", f"{base}/upload", data=form)
        if status != 200:
            raise self._scrub(classify_http(status, headers, body, where=self.host))
        try:
            paths: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            paths = None
        if not (isinstance(paths, list) and paths and isinstance(paths[0], str)):
            raise BadResponse(f"{self.host}: the upload answered {body[:80]!r}, not a list of paths", status=status)
        return paths[0]

    async def _call(self, base: str, plan: CallPlan, image_value: dict[str, Any]) -> str:
        status, headers, body = await self._request(
            "POST", f"{base}/call{plan.api_name}", data=plan.body(image_value),
            headers={"Content-Type": "application/json"},
        )
        if status != 200:
            raise self._scrub(classify_http(status, headers, body, where=self.host))
        try:
            answer: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        event_id = answer.get("event_id") if isinstance(answer, dict) else None
        if not isinstance(event_id, str) or not event_id:
            raise BadResponse(f"{self.host}: the call answered {body[:80]!r}, not an event id", status=status)
        return event_id

    async def _result(self, base: str, plan: CallPlan, event_id: str) -> str:
        """Read the event stream once, to its ``complete`` or ``error`` event (heartbeats are skipped)."""
        assert self._session is not None
        url = f"{base}/call{plan.api_name}/{quote(event_id, safe='')}"
        last_generating: str | None = None
        try:
            async with self._session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    body = await resp.read()
                    raise self._scrub(classify_http(resp.status, resp.headers, body, where=self.host))
                decoder = SseDecoder()
                async for chunk in resp.content.iter_any():
                    for event in decoder.feed(chunk):
                        if event.event == "complete":
                            data = event.data if event.data != "null" or last_generating is None else last_generating
                            return plan.caption(data, where=self.host)
                        if event.event == "error":
                            raise self._event_error(event.data, event_id)
                        if event.event == "generating":
                            last_generating = event.data
        except _CLIENT_ERRORS as exc:
            raise _transport_error(exc, self.host, self.timeout) from None
        except ValueError as exc:  # an endless line: not a Gradio stream
            raise BadResponse(f"{self.host}: unreadable event stream ({exc})") from None
        raise TransportError(f"{self.host} closed the event stream before the result of {event_id}")

    def _event_error(self, data: str, event_id: str) -> APIError:
        """An ``error`` event: ``{"error": message or null, "title": ...}``, or a bare JSON string."""
        try:
            payload: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = data
        message: str | None
        title: str | None = None
        if isinstance(payload, dict):
            raw = payload.get("error")
            message = None if raw is None else str(raw)
            title = payload.get("title") if isinstance(payload.get("title"), str) else None
        else:
            message = None if payload is None else str(payload)
        return self._scrub(classify_error(message, title=title, where=self.host, request_id=event_id))

    async def _request(
        self, method: str, url: str, *, data: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        assert self._session is not None, "use `async with SpaceClient(...)`"
        try:
            async with self._session.request(method, url, data=data, headers=headers, allow_redirects=False) as resp:
                return resp.status, resp.headers, await resp.read()
        except _CLIENT_ERRORS as exc:
            raise _transport_error(exc, self.host, self.timeout) from None

    def _scrub(self, error: APIError) -> APIError:
        """A server that echoes the token must not make us log it."""
        if self._token is not None and self._token.reveal() in error.message:
            error.message = error.message.replace(self._token.reveal(), "***")
            error.args = (error.message,)
        return error

    def __repr__(self) -> str:
        api = self.plan.api_name if self.plan is not None else "?"
        return f"<SpaceClient {self.url} api={api} capacity={self.capacity}>"
