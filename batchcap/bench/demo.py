"""``batchcap bench --demo``: two local emulators configured like the real services, so a bench runs offline.

A rate-limited, cold-starting "free API" and a faster paid "endpoint" (the price is made up), each on a free
loopback port, benchmarked on generated sample images (or on a folder the user gives).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio

from batchcap.bench.runner import Log, run_bench
from batchcap.bench.spec import DEMO_MODEL, BenchSettings, Target
from batchcap.bench.stats import BenchResult
from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, start_emulator
from batchcap.service.settings import TargetSettings
from batchcap.source.samples import generate

__all__ = ["DEMO_ENDPOINT_PRICE", "bench", "demo_settings", "demo_targets"]

DEMO_ENDPOINT_PRICE = 0.60  # made up, in the range of a small CPU/T4 Endpoint


def demo_settings() -> tuple[EmulatorSettings, EmulatorSettings]:
    """The "free API" (rate-limited, cold-starting, slower) and the "endpoint": one replica of a batching server
    (up to 8 requests together, each batch a little slower than one alone), as a realistic paid Endpoint is."""
    free = EmulatorSettings(rate=4.0, burst=2, cold_start=2.0, latency=0.25, latency_jitter=0.1, name="free-api")
    endpoint = EmulatorSettings(profile="endpoint", replicas=1, max_batch=8, latency=0.08, latency_jitter=0.02,
                                name="endpoint")
    return free, endpoint


@contextlib.asynccontextmanager
async def demo_targets() -> AsyncIterator[tuple[Target, ...]]:
    """Start both emulators on free loopback ports; yield the targets that point at them."""
    free_settings, endpoint_settings = demo_settings()
    async with await start_emulator(free_settings) as free, await start_emulator(endpoint_settings) as endpoint:
        base = free.url + "/hf-inference"
        yield (
            Target("free", f"hf:{DEMO_MODEL}", RunConfig(target=TargetSettings(api="hf", model=DEMO_MODEL, api_base=base)), 0.0),
            Target("endpoint", endpoint.url + "/", RunConfig(target=TargetSettings(api="hf", endpoint=endpoint.url + "/")),
                   DEMO_ENDPOINT_PRICE),
        )


async def bench(settings: BenchSettings, given_dir: Path | None, log: Log) -> BenchResult:
    """The bench ``batchcap bench`` runs: the user's targets, or with ``--demo`` the two emulators."""
    if not settings.demo:
        return await run_bench(settings, log=log, handle_signals=True)
    async with demo_targets() as targets:
        demo = replace(settings, targets=targets)
        none = {t.name: (None, "none (local emulator)") for t in targets}
        if given_dir is not None:
            return await run_bench(replace(demo, images_dir=given_dir), tokens=none, log=log, handle_signals=True)
        with tempfile.TemporaryDirectory(prefix="batchcap-bench-") as tmp:
            await anyio.to_thread.run_sync(lambda: generate(Path(tmp), settings.images, seed=settings.seed))
            return await run_bench(replace(demo, images_dir=Path(tmp),
                                           extra={"images_note": f"{settings.images} generated sample images"}),
                                   tokens=none, log=log, handle_signals=True)
