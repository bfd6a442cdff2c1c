"""Adaptive concurrency vs fixed pools against the strict emulator (issue 9), in one process on loopback.

    python benchmarks/bench_adaptive.py            # ~70 s
    python benchmarks/bench_adaptive.py --quick    # ~30 s
    python benchmarks/run.py --only adaptive

Rows (each a ratio or a count measured in the same run, never an absolute time):

* ``one-at-a-time``: ``EmulatorSettings(profile="endpoint", latency=0.25)`` (1 replica x 1, FIFO queue, abandoned
  work still runs), 60 images, ceiling 16, timeout 1.5 s. Adaptive: wall / server work (goal <= 1.6) and calls
  per image (goal <= 1.3); ``fixed:16`` beside it (info: what issue 9 measured on the real container).
* ``batching``: ``EmulatorSettings(profile="endpoint", max_batch=8, latency=0.1)`` (alpha 0.1). A closed-loop
  sweep of fixed pools 4, 6, 8, 12, 16 (what ``batchcap bench`` does; below 4 is far from the knee and slow to
  measure) and the adaptive limit with ceiling 16; adaptive img/s / best fixed img/s (goal >= 0.9).
* ``capacity``: an unlimited emulator (latency 0.1): adaptive ceiling 32 vs ``fixed:32`` (goal >= 0.9: adapting
  must not cost throughput on a server that has the capacity).

The sender is ``tests/integration/adaptive_harness.py`` (CaptionClient + the limiter, no pipeline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from _util import Ctx, Result
from adaptive_harness import DriveResult, drive, jpeg_images

from batchcap.emulator import EmulatorSettings, start_emulator
from batchcap.flow.concurrency import AdaptiveLimit, ConcurrencyLimiter, FixedLimit, LimitAlgorithm


async def _once(
    settings: EmulatorSettings, algorithm: LimitAlgorithm, images: int, request_timeout: float, attempts: int = 8
) -> DriveResult:
    async with await start_emulator(settings) as server:
        with anyio.fail_after(300):
            limiter = ConcurrencyLimiter(algorithm)
            return await drive(server.url + "/", jpeg_images(images), limiter, timeout=request_timeout, max_attempts=attempts)


async def _measure(quick: bool) -> list[Result]:
    rows: list[Result] = []
    latency, images = (0.1, 40) if quick else (0.25, 60)
    one = EmulatorSettings(profile="endpoint", latency=latency)
    timeout = 6 * latency
    adaptive = await _once(one, AdaptiveLimit(16), images, timeout)
    work = images * latency
    detail = f"{images} images x {latency:g} s on 1x1, ceiling 16, timeout {timeout:g} s; ok={adaptive.ok}"
    rows.append(Result("adaptive", "one-at-a-time: wall / server work", adaptive.wall / work, 1.6, "<=", "x", detail))
    rows.append(Result("adaptive", "one-at-a-time: calls per image", adaptive.calls / images, 1.3, "<=", "", detail))
    # The contrast, shorter (0.1 s per call, 24 images, 3 attempts each): the server still works through every
    # abandoned request, so this is bounded by attempts x images x latency.
    fixed = await _once(EmulatorSettings(profile="endpoint", latency=0.1), FixedLimit(16), 24, 0.6, attempts=3)
    rows.append(Result("adaptive", "one-at-a-time fixed:16: calls per image", fixed.calls / 24, None, ">=", "",
                       f"24 images x 0.1 s, timeout 0.6 s, 3 attempts: ok={fixed.ok} failed={fixed.failed} "
                       f"timeouts={fixed.timeouts} wall={fixed.wall:.1f} s"))

    batch = EmulatorSettings(profile="endpoint", max_batch=8, latency=0.1)
    n_images = 160 if quick else 320
    sweep = {}
    for n in (4, 8, 12, 16) if quick else (4, 6, 8, 12, 16):
        sweep[n] = (await _once(batch, FixedLimit(n), n_images, 10.0)).throughput
    best_n = max(sweep, key=lambda k: sweep[k])
    adapt = await _once(batch, AdaptiveLimit(16), n_images, 10.0)
    shown = ", ".join(f"{n}: {x:.1f}" for n, x in sweep.items())
    rows.append(Result("adaptive", "batching: adaptive / best fixed img/s", adapt.throughput / sweep[best_n], 0.9,
                       ">=", "x", f"adaptive {adapt.throughput:.1f} img/s (limit at end {adapt.limits[-1]}); "
                       f"fixed img/s {shown}; best {best_n}"))

    pipeline = await _pipeline(batch, n_images)
    rows.append(Result("adaptive", "batching: batchcap run (adaptive 16) / best fixed img/s", pipeline / sweep[best_n],
                       0.9, ">=", "x", f"the whole pipeline (scan, read, send, journal) at {pipeline:.1f} img/s on "
                       f"{n_images} sample images vs the sweep's best fixed pool ({best_n}: {sweep[best_n]:.1f})"))

    roomy = EmulatorSettings(latency=0.1)
    c_images = 2560  # long enough that slow start (5 round trips from 1 to 32) is amortised
    fixed32 = await _once(roomy, FixedLimit(32), c_images, 10.0)
    adapt32 = await _once(roomy, AdaptiveLimit(32), c_images, 10.0)
    rows.append(Result("adaptive", "capacity: adaptive 32 / fixed:32 img/s", adapt32.throughput / fixed32.throughput,
                       0.9, ">=", "x", f"{adapt32.throughput:.1f} vs {fixed32.throughput:.1f} img/s, "
                       f"c/L = {32 / 0.1:.0f}"))
    return rows


async def _pipeline(settings: EmulatorSettings, images: int) -> float:
    """``batchcap run --concurrency 16`` (adaptive) on generated images against ``settings``: images/s."""
    import tempfile

    from batchcap.config import RunConfig
    from batchcap.run import run as run_batchcap
    from batchcap.source.samples import generate

    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as tmp:
        folder = Path(tmp) / "img"
        generate(folder, images, seed=11)
        async with await start_emulator(settings) as server:
            cfg = RunConfig.build(input_dir=folder, out=Path(tmp) / "r.jsonl", endpoint=server.url + "/", concurrency=16,
                            timeout=10.0, dedupe="off").validate()
            with anyio.fail_after(300):
                stats = await run_batchcap(cfg)
    return stats.ok / stats.elapsed if stats.elapsed > 0 else 0.0


def run(ctx: Ctx) -> list[Result]:
    """Entry point for benchmarks/run.py."""
    return anyio.run(_measure, ctx.quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    for row in anyio.run(_measure, quick):
        value = "-" if row.value is None else f"{row.value:.2f}"
        goal = "" if row.goal is None else f" (goal {row.op} {row.goal:g})"
        print(f"{row.metric}: {value}{row.unit}{goal} {row.verdict}  [{row.detail}]")


if __name__ == "__main__":
    main()
