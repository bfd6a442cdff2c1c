"""The one place that speaks HTTP to a captioning service, and the one place aiohttp errors are translated.

The token goes only to the host of the configured URL, redirects are never followed (a redirect would
carry the Authorization header elsewhere), and nothing here logs headers.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import aiohttp
import orjson

from batchcap.errors import (
    APIError,
    BadResponse,
    CannotConnect,
    ConnectCause,
    RequestTimeout,
    TransportError,
    WrongTarget,
)
from batchcap.flow.window import quota_from_headers
from batchcap.models import LoadedImage, Quota, Usage
from batchcap.service.auth import Secret
from batchcap.service.protocols import Adapter, classify, parse_answer
from batchcap.version import __version__

__all__ = ["PROVIDER_HEADER", "CaptionClient", "Reply", "ServiceClient"]

#: The HF router names the provider that served a request here (protocol.md 1.1); its price is per provider.
PROVIDER_HEADER = "x-inference-provider"


@dataclass(frozen=True, slots=True)
class Reply:
    """A caption and what it cost."""

    caption: str
    latency_s: float
    bytes_sent: int
    request_id: str | None
    status: int
    finish_reason: str | None = None  #: why generation stopped, when the protocol says (``"length"``: cut off)
    usage: Usage | None = None  #: the tokens the server billed (token-billed targets), as it reported them
    provider: str | None = None  #: who served it, when a router says (``x-inference-provider``)
    quota: Quota | None = None  #: what the answer's rate-limit headers said (None: it had none)


class ServiceClient(Protocol):
    """What the run's Captioner, ``check --probe`` and ``bench`` use of a client: ``CaptionClient`` (one POST per
    attempt) or ``service.space.SpaceClient`` (a Gradio app's upload, call and event stream)."""

    @property
    def adapter(self) -> Adapter: ...

    @property
    def host(self) -> str: ...

    @property
    def capacity(self) -> int | None:
        """Calls the service runs at once when it says so (a Space), else None: where an adaptive limit starts."""
        ...

    async def caption(self, image: LoadedImage, *, adapter: Adapter | None = None, prompt: str | None = None
                      ) -> Reply:
        """One attempt; ``prompt`` is a task's, rendered for this image (shapes that carry no prompt ignore it)."""
        ...

    async def server_kind(self) -> str:
        """``"tgi"`` when the server is known to be text-generation-inference (its own ``response_format``),
        else ``"openai"``."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


#: What ``_transport_error`` translates (``TimeoutError`` is also ``asyncio.TimeoutError``).
_CLIENT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def _transport_error(exc: BaseException, host: str, timeout: float) -> TransportError:
    """The TransportError for one of ``_CLIENT_ERRORS``, most specific first."""
    if isinstance(exc, TimeoutError):
        return RequestTimeout(f"no answer from {host} within {timeout:g} s (raise --timeout?)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return CannotConnect(f"cannot connect to {host}: {exc.os_error.strerror or exc.os_error}", host=host,
                             cause=_connect_cause(exc))
    if isinstance(exc, aiohttp.ClientSSLError):
        return CannotConnect(f"cannot connect to {host}: TLS: {exc}", host=host, cause="tls")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{host} closed the connection before answering")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"broken answer from {host}: {exc.__class__.__name__}")
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"request to {host} failed: {exc.__class__.__name__}: {exc}")
    assert isinstance(exc, OSError)
    return TransportError(f"request to {host} failed: {exc.strerror or exc}")


def _connect_cause(exc: aiohttp.ClientConnectorError) -> ConnectCause:
    """Why no connection was made, by class: the guard's one line names the likely cause."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
        return "tls"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "refused"
    return "unreachable"


#: The headers that carry a quota (``flow.window`` reads them); looked up, not scanned, on each answer.
_QUOTA_HEADERS = ("RateLimit", "RateLimit-Policy", "RateLimit-Remaining", "x-ratelimit-remaining-requests",
                  "x-ratelimit-remaining-tokens", "x-ratelimit-remaining")


def _has_quota(headers: Mapping[str, str]) -> bool:
    """Whether an answer says anything about the quota (most say nothing: no parsing per caption then)."""
    return any(name in headers for name in _QUOTA_HEADERS)


#: aiohttp warns (ResourceWarning) for a raw bytes body over 1 MiB; a file-like body is streamed instead.
_LARGE_BODY = 1024 * 1024


def _body(data: bytes) -> bytes | io.BytesIO:
    """Small bodies as bytes (the cheap path), large ones (``--max-side 0`` photos) as a stream."""
    return data if len(data) <= _LARGE_BODY else io.BytesIO(data)


class CaptionClient:
    """Owns one ClientSession for a run; ``caption()`` makes exactly one HTTP attempt."""

    def __init__(
        self,
        url: str,
        adapter: Adapter,
        *,
        token: Secret | None = None,
        timeout: float = 60.0,
        connections: int = 64,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.adapter = adapter
        self.host = urlsplit(url).netloc
        self.timeout = timeout
        self._connections = connections
        self._headers = {"User-Agent": f"batchcap/{__version__}", **(extra_headers or {})}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.reveal()}"
        self._token = token
        self._session: aiohttp.ClientSession | None = None
        self.capacity: int | None = None  #: an Endpoint does not say how many calls it runs at once

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 30.0)),
            # No skip_auto_headers: every adapter sets Content-Type, so aiohttp adds none, and a skip list
            # costs ~5 us per request (aiohttp rebuilds and sorts it each time; benchmarks/README.md).
            raise_for_status=False,
            auto_decompress=True,
            trust_env=False,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def server_kind(self) -> str:
        """``"tgi"`` when the chat server at this URL says it is text-generation-inference (``GET /info``: its
        ``router`` is ``text-generation-router``), else ``"openai"`` (the HF router, vLLM, OpenAI: no such route).

        One GET, a few seconds at most, asked only by runs that need to know (a task with a JSON schema: TGI
        spells ``response_format`` its own way). Any failure means "not known to be TGI".
        """
        assert self._session is not None, "use `async with CaptionClient(...)`"
        base = self.url.removesuffix("/chat/completions").removesuffix("/v1").rstrip("/")
        try:
            async with self._session.get(base + "/info", allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=min(self.timeout, 10.0))) as resp:
                if resp.status != 200:
                    return "openai"
                info = await resp.json(content_type=None)
        except (*_CLIENT_ERRORS, ValueError):
            return "openai"
        return "tgi" if isinstance(info, dict) and info.get("router") == "text-generation-router" else "openai"

    async def get_json(self, url: str) -> Any:
        """One GET on the configured host (the token goes nowhere else), e.g. the router's ``/v1/models``.

        The decoded JSON, or the APIError its status maps to (``BadResponse`` for a body that is not JSON).
        """
        assert self._session is not None, "use `async with CaptionClient(...)`"
        if urlsplit(url).netloc != self.host:
            raise WrongTarget(f"{url} is not on {self.host}: the token is sent to the configured host only")
        try:
            async with self._session.get(url, headers={"Accept": "application/json"}, allow_redirects=False) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except _CLIENT_ERRORS as exc:
            raise _transport_error(exc, self.host, self.timeout) from None
        if not 200 <= status < 300:
            raise self._scrubbed(classify(status, headers, body, url_host=self.host))
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadResponse(f"{url} answered {status} with a body that is not JSON", status=status) from None

    async def caption(self, image: LoadedImage, *, adapter: Adapter | None = None, prompt: str | None = None
                      ) -> Reply:
        """One attempt. Raises an APIError subclass; the retry policy decides what comes next.

        ``adapter`` replaces the client's own for this request (a task's, or a quality retry at a higher
        temperature); ``prompt`` is the task's prompt rendered for this image (chat shapes send it).
        """
        assert self._session is not None, "use `async with CaptionClient(...)`"
        adapter = adapter or self.adapter
        built = adapter.build(image, prompt)
        started = time.perf_counter()
        try:  # a plain try, not a context manager: one per request would cost ~2 us
            async with self._session.post(
                self.url, data=_body(built.body), headers=built.headers, allow_redirects=False
            ) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except _CLIENT_ERRORS as exc:
            raise _transport_error(exc, self.host, self.timeout) from None
        latency = time.perf_counter() - started
        if 200 <= status < 300:
            try:
                text, finish_reason, usage = parse_answer(adapter, body)
            except APIError as exc:
                exc.status = status
                exc.request_id = headers.get("x-request-id")
                raise
            quota = quota_from_headers(headers, now_wall=time.time()) if _has_quota(headers) else None
            return Reply(text, latency, len(built.body), headers.get("x-request-id"), status, finish_reason, usage,
                         headers.get(PROVIDER_HEADER), quota)
        raise self._scrubbed(classify(status, headers, body, url_host=self.host))

    def _scrubbed(self, error: APIError) -> APIError:
        """A server that echoes the token must not make us log it."""
        if self._token is not None:
            error.message = error.message.replace(self._token.reveal(), "***")
            error.args = (error.message,)
        return error
