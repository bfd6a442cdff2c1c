"""``batchcap run`` against the strict emulator: a one-at-a-time Endpoint, a 3% mix of every network fault,
credits running out. The pipeline with its adaptive concurrency, retry policy and run guard, end to end."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import orjson
import pytest
from conftest import MODEL, EmulatorFactory

from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, caption_for
from batchcap.errors import RunAborted
from batchcap.flow.retry import RetryPolicy
from batchcap.run import run
from batchcap.source.samples import generate


@pytest.fixture
def images(tmp_path: Path) -> Path:
    generate(tmp_path / "img", 60, seed=9)
    return tmp_path / "img"


def records(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


async def one_at_a_time(emulator: EmulatorFactory, images: Path, tmp_path: Path, latency: float,
                        timeout: float) -> None:
    server = await emulator(EmulatorSettings(profile="endpoint", latency=latency))
    out = tmp_path / "r.jsonl"
    cfg = RunConfig.build(input_dir=images, out=out, endpoint=server.url + "/", concurrency=16, timeout=timeout).validate()
    started = time.monotonic()
    with anyio.fail_after(30 + 60 * latency * 3):
        stats = await run(cfg)
    wall = time.monotonic() - started
    assert (stats.ok, stats.failed) == (60, 0)
    assert wall <= 1.6 * 60 * latency + 1.0, wall  # + start-up (scan, read, first connection)
    assert stats.attempts <= 1.3 * 60, stats.attempts
    for rec in records(out):  # each image its own caption
        assert rec["caption"] == caption_for((images / str(rec["path"])).read_bytes())


@pytest.mark.timing  # a 0.3 s timeout and a wall-clock bound: a loaded machine turns them into retries
async def test_a_one_at_a_time_endpoint_is_not_drowned_fast(emulator: EmulatorFactory, images: Path,
                                                            tmp_path: Path) -> None:
    await one_at_a_time(emulator, images, tmp_path, latency=0.05, timeout=0.3)


@pytest.mark.slow
async def test_a_one_at_a_time_endpoint_as_in_the_issue(emulator: EmulatorFactory, images: Path,
                                                        tmp_path: Path) -> None:
    await one_at_a_time(emulator, images, tmp_path, latency=0.25, timeout=1.5)


@pytest.mark.parametrize("fault", ["reset_rate", "truncate_rate", "proxy_error_rate", "garble_rate", "hang_rate"])
async def test_a_three_percent_mix_of_each_fault_loses_nothing(
    emulator: EmulatorFactory, images: Path, tmp_path: Path, fault: str
) -> None:
    server = await emulator(EmulatorSettings(**{fault: 0.03, "seed": 4}))  # type: ignore[arg-type]
    out = tmp_path / "r.jsonl"
    cfg = RunConfig.build(input_dir=images, out=out, model=MODEL, api_base=server.url + "/hf-inference", rate=None,
                    concurrency=8, timeout=1.0).validate()
    with anyio.fail_after(60):
        stats = await run(cfg, policy=RetryPolicy(retries=5, base=0.01, cap=0.05))
    assert (stats.ok, stats.failed) == (60, 0)
    recs = records(out)
    assert len(recs) == 60
    assert len({r["path"] for r in recs}) == 60  # exactly one ok line per image
    for rec in recs:
        assert rec["caption"] == caption_for((images / str(rec["path"])).read_bytes())


async def test_credits_after_40_captions_stop_the_run_and_the_next_does_the_rest(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings(credits=40, latency=0.01))
    out = tmp_path / "r.jsonl"
    cfg = RunConfig.build(input_dir=images, out=out, model=MODEL, api_base=server.url + "/hf-inference", rate=None,
                    concurrency=4).validate()
    started = time.monotonic()
    with anyio.fail_after(20), pytest.raises(RunAborted, match="credits") as info:
        await run(cfg)
    assert info.value.kind == "credits"
    assert time.monotonic() - started < 10
    assert server.log.count(402) <= 2 * cfg.limits.ceiling
    done = records(out)
    assert {r["status"] for r in done} == {"ok"}  # no error record for the images not done
    assert 40 - cfg.limits.ceiling <= len(done) <= 40  # requests in flight at the stop are not waited for
    fresh = await emulator(EmulatorSettings())
    # Another emulator is another URL, so another target in the answers' fingerprints: keep the first's answers.
    with anyio.fail_after(20):
        stats = await run(RunConfig.build(input_dir=images, out=out, model=MODEL, api_base=fresh.url + "/hf-inference",
                                          rate=None, keep_stale=True).validate())
    assert (stats.ok, stats.skipped) == (60 - len(done), len(done))  # exactly the rest
