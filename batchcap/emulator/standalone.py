"""The emulator as a standalone process (``batchcap serve``): the serving loop that runs until Ctrl-C or SIGTERM.

``batchcap.cli.serve`` owns the flags and the settings they make; this loop prints the one line that says where
it listens (the demo script reads it) and returns the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from batchcap.emulator.management import ManagedEndpointSettings, start_managed_endpoint
from batchcap.emulator.server import start_emulator
from batchcap.emulator.settings import EmulatorSettings

__all__ = ["serve"]


async def _serve_until_signal(
    settings: EmulatorSettings, host: str, port: int, managed: ManagedEndpointSettings | None = None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers on Windows loops
            loop.add_signal_handler(sig, stop.set)
    try:
        server = await start_emulator(settings, host, port)
    except OSError as exc:
        print(
            f"batchcap emulator: cannot listen on {host}:{port}: {exc.strerror}; pick another --port",
            file=sys.stderr,
        )
        return 1
    async with server:
        print(f"batchcap emulator listening on {server.url} ({settings.describe()})", flush=True)
        if managed is None:
            await stop.wait()
            return 0
        async with await start_managed_endpoint(managed, upstream=server.url, host=host) as endpoint:
            print(f"batchcap emulator: Endpoint {managed.namespace}/{managed.name} ({endpoint.state}): management "
                  f"API {endpoint.api_url} (--endpoints-api), the endpoint itself at {endpoint.endpoint_url}",
                  flush=True)
            await stop.wait()
    return 0


def serve(
    settings: EmulatorSettings, host: str = "127.0.0.1", port: int = 8080,
    managed: ManagedEndpointSettings | None = None,
) -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit code (0 after a signal, 1 if it cannot bind)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop  # optional: ~10% less server CPU per request measured here

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve_until_signal(settings, host, port, managed))
    except KeyboardInterrupt:  # a Ctrl-C that landed before the handlers were installed
        return 0
