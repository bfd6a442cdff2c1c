"""``batchcap bench --demo``: three local emulators configured like the real services, so a bench runs offline.

A rate-limited, cold-starting "free API", a faster paid "endpoint" (billed by the hour; the price is made up) and
a "router" provider serving a VLM over the chat route (billed by the token, at the prices its ``/v1/models``
lists), each on a free loopback port, benchmarked on generated sample images (or on a folder the user gives):
the three ways to pay in one table.
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


def demo_settings() -> tuple[EmulatorSettings, EmulatorSettings, EmulatorSettings]:
    """The "free API" (rate-limited, cold-starting, slower), the "endpoint": one replica of a batching server
    (up to 8 requests together, each batch a little slower than one alone), as a realistic paid Endpoint is, and
    the "router": a VLM provider (slower per answer, no shared limit) that bills each answer's tokens."""
    free = EmulatorSettings(rate=4.0, burst=2, cold_start=2.0, latency=0.25, latency_jitter=0.1, name="free-api")
    endpoint = EmulatorSettings(profile="endpoint", replicas=1, max_batch=8, latency=0.08, latency_jitter=0.02,
                                name="endpoint")
    router = EmulatorSettings(latency=0.4, latency_jitter=0.1, name="router")
    return free, endpoint, router


@contextlib.asynccontextmanager
async def demo_targets() -> AsyncIterator[tuple[Target, ...]]:
    """Start the emulators on free loopback ports; yield the targets that point at them."""
    free_settings, endpoint_settings, router_settings = demo_settings()
    async with await start_emulator(free_settings) as free, await start_emulator(endpoint_settings) as endpoint, \
            await start_emulator(router_settings) as router:
        base = free.url + "/hf-inference"
        yield (
            Target("free", f"hf:{DEMO_MODEL}", RunConfig(target=TargetSettings(api="hf", model=DEMO_MODEL, api_base=base)), 0.0),
            Target("endpoint", endpoint.url + "/", RunConfig(target=TargetSettings(api="hf", endpoint=endpoint.url + "/")),
                   DEMO_ENDPOINT_PRICE),
            Target("router", f"openai:{DEMO_MODEL}@{router.url}/v1",
                   RunConfig(target=TargetSettings(api="openai", model=DEMO_MODEL, base_url=router.url + "/v1"))),
        )


async def bench(settings: BenchSettings, given_dir: Path | None, log: Log) -> BenchResult:
    """The bench ``batchcap bench`` runs: the user's targets, or with ``--demo`` the three emulators."""
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
