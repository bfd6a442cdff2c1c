"""Shared fixtures: the asyncio backend, emulators on real loopback sockets, and a folder of sample images."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from batchcap.emulator import EmulatorSettings, RunningEmulator, start_emulator
from batchcap.samples import generate

EmulatorFactory = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorFactory]:
    """``server = await emulator(EmulatorSettings(...))`` starts one on port 0; all are closed at teardown."""
    servers: list[RunningEmulator] = []

    async def start(settings: EmulatorSettings) -> RunningEmulator:
        server = await start_emulator(settings)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        while servers:
            await servers.pop().close()


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """20 generated images (PNG, JPEG, WebP, GIF) in nested folders."""
    dest = tmp_path / "samples"
    generate(dest, 20, seed=0)
    return dest
