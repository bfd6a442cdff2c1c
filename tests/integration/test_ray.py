"""Ray on a local cluster (127.0.0.1, started once per test session): the job's shared limiter and progress."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from batchcap.emulator.log import busiest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only: see distributed/driver.py
ray = pytest.importorskip("ray")

from batchcap.distributed.limiter import RemoteLimiter, SharedLimiter
from batchcap.distributed.tally import ProgressHub, RemoteProgress

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import a test module
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


def _hammer(actor: Any, rate: float, n: int) -> list[float]:  # pickled by value: see the fixture
    """In a Ray worker: take ``n`` tokens as a run's senders would, 4 at a time; the grant times."""
    import anyio

    limiter = RemoteLimiter(actor, rate)
    times: list[float] = []

    async def sender(k: int) -> None:
        for _ in range(k):
            if not limiter.try_acquire():
                await limiter.acquire()
            times.append(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process on this machine
            limiter.succeeded()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sender, n // 4)

    anyio.run(main)
    return times


def test_two_workers_share_one_rate(ray_cluster: Any) -> None:
    rate, burst = 40.0, 4
    actor = ray.remote(SharedLimiter).options(num_cpus=0).remote(rate, burst)
    task = ray.remote(_hammer).options(num_cpus=1)
    got = ray.get([task.remote(actor, rate, 60), task.remote(actor, rate, 60)], timeout=60)
    times = sorted(t for part in got for t in part)
    assert len(times) == 120
    assert busiest(times, 1.0) <= rate + burst  # the job, not each worker, holds --rate
    span = times[-1] - times[0]
    assert span >= (120 - burst) / rate * 0.95
    granted, throttles, now_rate = ray.get(actor.stats.remote())
    assert (granted, throttles, now_rate) == (120, 0, rate)


def test_a_429_in_one_worker_slows_the_job(ray_cluster: Any) -> None:
    actor = ray.remote(SharedLimiter).options(num_cpus=0).remote(40.0, 4)
    RemoteLimiter(actor, 40.0).throttled(None)
    assert ray.get(actor.stats.remote())[2] == 20.0


def test_progress_hub_adds_up_workers(ray_cluster: Any) -> None:
    hub = ray.remote(ProgressHub).options(num_cpus=0).remote()
    a, b = RemoteProgress(hub, "shard 1/2: "), RemoteProgress(hub)
    a.found(5)
    a.done(3, 1)
    b.found(2)
    b.note("rate-limited")
    a.close()
    b.close()
    got = (0, 0, 0, "")
    deadline = time.monotonic() + 30
    while got[:3] != (7, 3, 1) and time.monotonic() < deadline:  # the adds are fire-and-forget: add them up
        found, ok, failed, note = ray.get(hub.take.remote())
        got = (got[0] + found, got[1] + ok, got[2] + failed, note or got[3])
    assert got == (7, 3, 1, "rate-limited")
    assert ray.get(hub.take.remote()) == (0, 0, 0, "")


async def test_driver_on_the_session_cluster_captions_each_image_once_at_one_rate(
    ray_cluster: Any, emulator: Any, tmp_path: Path
) -> None:
    from batchcap import RunConfig
    from batchcap.distributed import part_paths, run_distributed
    from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings
    from batchcap.source.samples import generate

    server = await emulator(EmulatorSettings(latency=0.01))
    folder = tmp_path / "imgs"
    paths = [p.relative_to(folder).as_posix() for p in generate(folder, 80, seed=8)]
    out = tmp_path / "captions.jsonl"
    cfg = RunConfig.build(input_dir=folder, out=out, model=DEFAULT_MODEL_ID, api_base=f"{server.url}/hf-inference",
                    rate=20.0, burst=2, concurrency=6, quiet=True).validate()
    # In a thread: the emulator answers on this event loop while the driver blocks on Ray.
    job = await anyio.to_thread.run_sync(lambda: run_distributed(cfg, workers=2, shards=4))
    assert job.shared_limiter
    assert (job.counts["ok"], job.counts["failed"], job.shards_done) == (80, 0, 4)
    assert job.merge is not None
    assert job.merge.images == 80
    merged = [orjson.loads(x)["path"] for x in out.read_bytes().splitlines()]
    assert sorted(merged) == sorted(paths)
    assert len(part_paths(out)) == 4
    assert server.log.count(200) == 80
    assert server.log.max_per_second() <= 20 + 2  # 20/s: one 50 ms interval of slack for a loaded machine
    again = await anyio.to_thread.run_sync(lambda: run_distributed(cfg, workers=2))  # shard count read back
    assert (again.counts["ok"], again.counts["skipped"]) == (0, 80)


async def test_a_refused_token_aborts_the_job_with_the_reason(
    ray_cluster: Any, emulator: Any, tmp_path: Path
) -> None:
    from batchcap import RunConfig
    from batchcap.distributed import JobAborted, run_distributed
    from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings
    from batchcap.source.samples import generate

    server = await emulator(EmulatorSettings(auth="protected"))
    folder = tmp_path / "imgs"
    generate(folder, 20, seed=8)
    cfg = RunConfig.build(input_dir=folder, out=tmp_path / "c.jsonl", model=DEFAULT_MODEL_ID,
                    api_base=f"{server.url}/hf-inference", rate=None, quiet=True).validate()
    with pytest.raises(JobAborted, match="token"):
        await anyio.to_thread.run_sync(lambda: run_distributed(cfg, workers=2, shards=2))


async def test_a_parquet_dataset_is_captioned_by_shards_of_whole_files_each_row_once(
    ray_cluster: Any, emulator: Any, tmp_path: Path
) -> None:
    """Issue 19: ``--ray`` takes every source a run takes; a parquet dataset's shards are whole files."""
    pytest.importorskip("datasets")
    from hubdata import noise_jpeg, write_parquet

    from batchcap import RunConfig
    from batchcap.distributed import run_distributed
    from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings

    server = await emulator(EmulatorSettings(latency=0.005))
    data = tmp_path / "ds"
    write_parquet(data, [noise_jpeg(i, side=64) for i in range(60)], 3)
    out = tmp_path / "captions.jsonl"
    cfg = RunConfig.build(input_dir=data, out=out, model=DEFAULT_MODEL_ID, api_base=f"{server.url}/hf-inference",
                          rate=None, concurrency=6, quiet=True).validate()
    job = await anyio.to_thread.run_sync(lambda: run_distributed(cfg, workers=2, shards=3))
    assert (job.counts["ok"], job.counts["failed"], job.shards_done) == (60, 0, 3)
    merged = [orjson.loads(x)["path"] for x in out.read_bytes().splitlines()]
    assert sorted(merged) == sorted(f"train-{s:05d}-of-00003.parquet#{r}" for s in range(3) for r in range(20))
    assert server.log.count(200) == 60
    again = await anyio.to_thread.run_sync(lambda: run_distributed(cfg, workers=2))
    assert (again.counts["ok"], again.counts["skipped"]) == (0, 60)
