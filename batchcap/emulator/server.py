"""An emulator on a real socket, for tests and benchmarks that run it inside their own event loop.

Real HTTP over a socket, not aiohttp's test client, so the client under test goes through the same connection
pooling, timeouts and error mapping as it does against the hosted services.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web

from batchcap.emulator.app import make_app, reconfigure
from batchcap.emulator.capacity import ModelPool
from batchcap.emulator.log import RequestLog
from batchcap.emulator.settings import EmulatorSettings
from batchcap.emulator.state import _STATE, REQUEST_LOG

__all__ = ["RunningEmulator", "start_emulator"]


class RunningEmulator:
    """An emulator bound to a real socket; ``async with`` or :meth:`close` stops it."""

    def __init__(self, runner: web.AppRunner, url: str, settings: EmulatorSettings, host: str, port: int) -> None:
        self._runner = runner
        self.url = url
        self.settings = settings
        self._host = host
        self._port = port

    @property
    def app(self) -> web.Application:
        return self._runner.app

    @property
    def log(self) -> RequestLog:
        return self.app[REQUEST_LOG]

    @property
    def pool(self) -> ModelPool | None:
        """The model's replicas and queue, or None when capacity is unlimited."""
        return self.app[_STATE].pool

    def reconfigure(self, settings: EmulatorSettings) -> None:
        """From the next request on, behave as ``settings`` say (faults, latency, limits); see ``app.reconfigure``."""
        reconfigure(self.app, settings)
        self.settings = settings

    async def go_down(self) -> None:
        """An outage, as a killed server: stop listening (new connections are refused) and drop every open
        connection (requests in flight get a reset). The app and its log stay; ``come_back`` reopens the port."""
        for site in list(self._runner.sites):
            await site.stop()
        server = self._runner.server
        if server is not None:
            for handler in list(server.connections):
                transport = handler.transport
                if transport is not None:
                    transport.abort()

    async def come_back(self) -> None:
        """The end of an outage: listen again on the same port."""
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()

    async def close(self) -> None:
        """Stop listening and cancel in-flight requests; safe to call twice."""
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RunningEmulator {self.url} {self.log!r}>"


async def start_emulator(
    settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Serve :func:`make_app` on ``host:port`` (port 0 picks a free one; ``.url`` has the real one)."""
    settings = settings or EmulatorSettings()
    # No access log: it would cost more than the request itself. A short shutdown keeps test teardown fast.
    runner = web.AppRunner(make_app(settings), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound_port = int(address[1])
            break
    shown_host = f"[{host}]" if ":" in host else host
    return RunningEmulator(runner, f"http://{shown_host}:{bound_port}", settings, host, bound_port)
