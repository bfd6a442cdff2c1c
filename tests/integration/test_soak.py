"""Soak: many kills of a run against a flaky, rate-limited service. Slow; run with ``pytest -m slow``."""

from __future__ import annotations

import random
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap.emulator import EmulatorSettings, RunningEmulator, caption_for
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]

pytestmark = pytest.mark.slow


async def test_repeated_kills_lose_nothing(emulator: Emulator, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    generate(folder, 1000, seed=11)
    server = await emulator(EmulatorSettings(latency=0.01, latency_jitter=0.01, fail_rate=0.1, rate=300, burst=20))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model", "m",
           "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited", "--concurrency", "16",
           "--retries", "10", "--quiet"]
    rng = random.Random(1)
    with anyio.fail_after(240):
        for _ in range(6):  # bounded: six kills at random moments, then one run to the end
            async with await anyio.open_process(cmd) as proc:
                await anyio.sleep(rng.uniform(0.3, 1.5))
                proc.send_signal(rng.choice([signal.SIGKILL, signal.SIGINT, signal.SIGTERM]))
                await proc.wait()
        result = await anyio.run_process(cmd, check=False)
    assert result.returncode == 0, result.stderr.decode()
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    oks = Counter(r["path"] for r in recs if r["status"] == "ok")
    assert len(oks) == 1000
    assert set(oks.values()) == {1}
    for rec in recs:
        if rec["status"] == "ok":
            assert rec["caption"] == caption_for((folder / rec["path"]).read_bytes())
