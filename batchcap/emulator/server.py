"""An emulator on a real socket, for tests and benchmarks that run it inside their own event loop.

Real HTTP over a socket, not aiohttp's test client, so the client under test goes through the same connection
pooling, timeouts and error mapping as it does against the hosted services.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web

from batchcap.emulator.app import make_app
from batchcap.emulator.capacity import ModelPool
from batchcap.emulator.log import RequestLog
from batchcap.emulator.settings import EmulatorSettings
from batchcap.emulator.state import _STATE, REQUEST_LOG

__all__ = ["RunningEmulator", "start_emulator"]


class RunningEmulator:
    """An emulator bound to a real socket; ``async with`` or :meth:`close` stops it."""

    def __init__(self, runner: web.AppRunner, url: str, settings: EmulatorSettings) -> None:
        self._runner = runner
        self.url = url
        self.settings = settings

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
    return RunningEmulator(runner, f"http://{shown_host}:{bound_port}", settings)
