"""Shared fixtures: the asyncio backend, emulators on real loopback sockets, and a folder of sample images."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator, start_emulator
from batchcap.source.samples import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: corpus.py and the helpers beside it

from corpus import build

EmulatorFactory = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
RawServerFactory = Callable[[Handler], Awaitable[str]]
#: The one model id every test uses (the emulator's default).
MODEL = DEFAULT_MODEL_ID


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


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServerFactory]:
    """``url = await raw_server(handler)``: aiohttp's RawTestServer on 127.0.0.1 for a client edge case."""
    servers: list[RawTestServer] = []

    async def start(handler: Handler) -> str:
        server = RawTestServer(handler, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    try:
        yield start
    finally:
        while servers:
            await servers.pop().close()


@pytest.fixture(scope="session")
def corpus_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated corpus of real-world files (tests/corpus.py, ~6 s, once per session): name -> path."""
    return build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus(corpus_paths: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in corpus_paths.items()}


@pytest.fixture(scope="session")
def pillow_test_images() -> list[Path]:
    """Pillow's own test images, fetched by ``make venv`` (scripts/fetch_test_data.py), never during a test."""
    import PIL

    folder = Path(__file__).resolve().parents[1] / ".cache" / "pillow-tests" / PIL.__version__
    if not (folder / "extracted").exists():
        pytest.skip(f"Pillow's test images are not in {folder}: run `make venv` (scripts/fetch_test_data.py) "
                    "with network once")
    return sorted(p for p in (folder / "images").rglob("*") if p.is_file())
