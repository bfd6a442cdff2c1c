"""Soak: many kills of a run against a flaky, rate-limited service. Slow; run with ``pytest -m slow``."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
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


# -- a night, compressed (issue 17): 50,000 images, 20 minutes, a rotating fault schedule -------------------------

#: How many images and minutes (``make soak``; smaller numbers for a quick look: BATCHCAP_SOAK_IMAGES=5000 ...).
SOAK_IMAGES = int(os.environ.get("BATCHCAP_SOAK_IMAGES", "50000"))
SOAK_MINUTES = float(os.environ.get("BATCHCAP_SOAK_MINUTES", "20"))
#: Where the numbers go (RSS, fds, counts per phase), besides the test's own output.
SOAK_REPORT = os.environ.get("BATCHCAP_SOAK_REPORT", "")
#: Seconds each phase of the schedule lasts, and the phases in turn.
PHASE_S = 40.0
NORMAL = EmulatorSettings(latency=0.05, latency_jitter=0.03)
SCHEDULE: tuple[tuple[str, EmulatorSettings | None], ...] = (
    ("normal", NORMAL),
    ("cut bodies", replace(NORMAL, truncate_rate=0.03, reset_rate=0.02, garble_rate=0.01, proxy_error_rate=0.02)),
    ("429 storm", replace(NORMAL, rate=25.0, burst=5)),
    ("fixed window", replace(NORMAL, window_quota=30, window_seconds=1.0)),
    ("outage", None),  # killed, back on the same port when the phase ends
    ("5xx and hangs", replace(NORMAL, fail_rate=0.05, hang_rate=0.002)),
)


def _proc_numbers(pid: int) -> tuple[int, int] | None:
    """(RSS in kB, open file descriptors) of a live process, from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss, fds


async def test_a_night_compressed(emulator: Emulator, tmp_path: Path) -> None:
    """50,000 images for about 20 minutes through outages, 429 storms, fixed windows, cut bodies, 5xx and hangs, a
    SIGTERM and a resume: exactly one ok line per image, RSS growth under 10% after warm-up, descriptors flat."""
    folder = tmp_path / "night"
    generate(folder, SOAK_IMAGES, seed=17)
    server = await emulator(NORMAL)
    out = tmp_path / "night.jsonl"
    log = tmp_path / "night.log"
    rate = SOAK_IMAGES / (SOAK_MINUTES * 60 * 0.6)  # the run's own pace; the faults eat about 40% of the time
    cmd = [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--endpoint", f"{server.url}/",
           "--rate", f"{rate:.1f}", "--concurrency", "16", "--timeout", "10", "--no-dedupe", "--progress-every",
           "30"]
    samples: list[tuple[float, int, int, int]] = []  # (seconds into the second process, rss kB, fds, lines)
    phases: list[str] = []
    stop_schedule = anyio.Event()

    async def schedule() -> None:
        for i in range(10_000):  # bounded; the run ends long before
            name, settings = SCHEDULE[i % len(SCHEDULE)]
            phases.append(name)
            if settings is None:
                await server.go_down()
            else:
                server.reconfigure(settings)
            with anyio.move_on_after(PHASE_S):
                await stop_schedule.wait()
            if settings is None:
                await server.come_back()
            if stop_schedule.is_set():
                server.reconfigure(NORMAL)
                return

    async def sample(pid: int, started: float) -> None:
        while (got := _proc_numbers(pid)) is not None:
            lines = out.read_bytes().count(b"\n") if out.exists() else 0
            samples.append((time.monotonic() - started, got[0], got[1], lines))
            await anyio.sleep(5)

    limit = SOAK_MINUTES * 60 * 3 + 600
    with anyio.fail_after(limit), log.open("wb") as stderr:
        async with anyio.create_task_group() as tg:
            tg.start_soon(schedule)
            async with await anyio.open_process(cmd, stderr=stderr) as first:
                with anyio.fail_after(limit):
                    while (out.read_bytes().count(b"\n") if out.exists() else 0) < SOAK_IMAGES // 5:
                        await anyio.sleep(1)
                first.send_signal(signal.SIGTERM)  # stop at a fifth: drained, then resumed
                await first.wait()
            assert first.returncode == 130, log.read_text()[-3000:]
            while phases[-1] == "outage":  # a run that starts while the target is down stops as a wrong target
                await anyio.sleep(0.5)
            second_started = time.monotonic()
            async with await anyio.open_process(cmd, stderr=stderr) as second:
                tg.start_soon(sample, second.pid, second_started)
                await second.wait()
            stop_schedule.set()
    text = log.read_text()
    assert second.returncode == 0, text[-3000:]
    assert "\r" not in text  # a log, not a terminal: plain lines only
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r for r in recs if r["status"] != "ok"] == []
    oks = Counter(r["path"] for r in recs)
    assert len(oks) == SOAK_IMAGES
    assert set(oks.values()) == {1}  # exactly one ok line per image
    elapsed = samples[-1][0] if samples else 0.0
    # Warm-up: caches reach their bounds (the boilerplate counter's 4,096 captions) and so do the allocator's
    # arenas (``run.malloc`` keeps up to 16 MB of freed heap in each thread's arena): RSS climbs in steps while
    # the schedule's worst moments come round (the bursts after the first outages), then stays flat. Measured:
    # +12-20% from minute 3 to minute 9, then +0.05% and +1.5% over the second half of two 50,000-image runs. A
    # leak grows with the work done; so growth is measured over the second half of the run.
    warm = next((s for s in samples if s[0] >= max(180.0, 0.5 * elapsed)), samples[0])
    after = [s for s in samples if s[0] >= warm[0]]
    end_rss = max(s[1] for s in after[-6:])  # the last half minute
    peak_fds = max(s[2] for s in after)
    numbers = {
        "images": SOAK_IMAGES, "minutes_second_run": round(elapsed / 60, 1), "phases": len(phases),
        "requests": server.log.total, "by_status": server.log.snapshot()["by_status"],
        "warm_rss_kb": warm[1], "end_rss_kb": end_rss, "rss_growth": round(end_rss / warm[1] - 1, 4),
        "warm_fds": warm[2], "peak_fds_after_warm_up": peak_fds, "end_fds": after[-1][2],
    }
    print("soak:", json.dumps(numbers))
    if SOAK_REPORT:
        Path(SOAK_REPORT).write_text(json.dumps({**numbers, "samples": samples}, indent=1))
    assert end_rss < 1.10 * warm[1]  # RSS growth under 10% after warm-up
    assert peak_fds <= warm[2] + 24  # descriptors flat: at most the connection pool's breathing
