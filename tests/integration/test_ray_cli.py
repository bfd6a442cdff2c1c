"""`batchcap run --ray local --workers 2` as a user runs it: one rate for the whole job, one results file, resume."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap.cli import EXIT_INTERRUPTED, EXIT_OK
from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator
from batchcap.source.samples import generate

pytestmark = pytest.mark.ray

pytest.importorskip("ray")

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
RATE, BURST = 40, 4


def command(server: RunningEmulator, folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model", DEFAULT_MODEL_ID,
            "--api-base", f"{server.url}/hf-inference", "--ray", "local", "--workers", "2", "--rate", str(RATE),
            "--burst", str(BURST), "--concurrency", "8", "--quiet"]


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RAY_ADDRESS")}
    base["HF_HOME"] = "/nonexistent-batchcap-test"
    return base


def lines(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in out.read_bytes().splitlines()] if out.exists() else []


def part_lines(out: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in out.with_name(out.name + ".parts").glob("part-*.jsonl"))


@pytest.mark.slow  # ~20 s: two Ray cluster starts and 4 s of rate-bound work (pytest -m slow runs it)
async def test_two_workers_hold_one_rate_then_resume_after_the_driver_is_stopped(
    emulator: Emulator, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings(latency=0.02))
    folder = tmp_path / "imgs"
    paths = [p.relative_to(folder).as_posix() for p in generate(folder, 160, seed=4)]
    out = tmp_path / "captions.jsonl"
    log = tmp_path / "driver.log"
    with open(log, "wb") as sink:
        proc = await anyio.open_process(command(server, folder, out), env=env(), stderr=sink)
    async with proc:
        with anyio.fail_after(120):
            while part_lines(out) < 40:
                await anyio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # the driver is stopped mid-job
        with anyio.fail_after(60):
            await proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, log.read_text()[-3000:]
    first = lines(out)  # merged on the way out: what was done is in --out already
    assert 40 <= len(first) < 160
    done = await anyio.run_process(command(server, folder, out), env=env(), check=False)
    assert done.returncode == EXIT_OK, done.stderr.decode()[-2000:]
    merged = lines(out)
    assert Counter(r["path"] for r in merged) == Counter(paths)  # exactly one line per image
    assert all(r["status"] == "ok" for r in merged)
    busiest = server.log.max_per_second()
    print(f"busiest second at the server: {busiest} (rate {RATE} + burst {BURST})")
    assert busiest <= RATE + BURST  # measured at the server, over both workers
    assert server.log.count(200) <= 160 + 8  # at most the requests in flight at the stop were repeated
