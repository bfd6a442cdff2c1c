"""``batchcap bench``: is a paid Endpoint worth it against the free API, for these images, at what concurrency?

Each target is benchmarked in turn on the same images (loaded once, into memory) with the project's own
``CaptionClient`` and protocol adapters, so the bench measures what ``batchcap run`` would get:

    cold start (time to first caption) -> closed-loop sweep over --concurrency -> open-loop sweep over
    --arrival-rate -> summaries (benchstats) -> bench.json, bench.md, bench.png (report)

Every loop is bounded in requests and seconds, and the whole bench by ``--max-time``, split fairly between
the targets still to run. ``--demo`` starts two local emulators (a rate-limited, cold-starting "free API" and
a fast "endpoint") so the whole thing runs offline in under a minute.

The parts: ``benchspec`` (targets and settings), ``benchargs`` (flags), ``benchrun`` (the measuring), ``loadgen``
(the load), ``benchstats`` (the numbers), ``report`` (the files); this module ties them into the command.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from .benchargs import _images_dir, add_arguments, settings_from_args
from .benchrun import BenchAborted, run_bench
from .benchspec import DEMO_MODEL, BenchSettings, Target, UsageError, parse_target, resolve_targets
from .benchstats import BenchResult
from .config import RunConfig
from .errors import ConfigError

__all__ = [
    "BenchAborted",
    "BenchSettings",
    "Target",
    "UsageError",
    "add_arguments",
    "demo_settings",
    "demo_targets",
    "parse_target",
    "resolve_targets",
    "run_bench",
    "run_from_args",
    "settings_from_args",
]

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEMO_ENDPOINT_PRICE = 0.60  # made up, in the range of a small CPU/T4 Endpoint


# ---------------------------------------------------------------------------------------------------------------
# Demo: two emulators configured like the real services.


def demo_settings() -> tuple[Any, Any]:
    """The "free API" (rate-limited, cold-starting, slower) and the "endpoint" (unlimited, faster)."""
    from .emulator import EmulatorSettings

    free = EmulatorSettings(rate=4.0, burst=2, cold_start=2.0, latency=0.25, latency_jitter=0.1, name="free-api")
    endpoint = EmulatorSettings(latency=0.08, latency_jitter=0.02, name="endpoint")
    return free, endpoint


@contextlib.asynccontextmanager
async def demo_targets() -> AsyncIterator[tuple[Target, ...]]:
    """Start both emulators on free loopback ports; yield the targets that point at them."""
    from .emulator import start_emulator

    free_settings, endpoint_settings = demo_settings()
    async with await start_emulator(free_settings) as free, await start_emulator(endpoint_settings) as endpoint:
        base = free.url + "/hf-inference"
        yield (
            Target("free", f"hf:{DEMO_MODEL}", RunConfig(api="hf", model=DEMO_MODEL, api_base=base), 0.0),
            Target("endpoint", endpoint.url + "/", RunConfig(api="hf", endpoint=endpoint.url + "/"),
                   DEMO_ENDPOINT_PRICE),
        )


# ---------------------------------------------------------------------------------------------------------------
# Command line.


async def _main(settings: BenchSettings, given_dir: Path | None, log: Callable[[str], None]) -> BenchResult:
    if not settings.demo:
        return await run_bench(settings, log=log, handle_signals=True)
    async with demo_targets() as targets:
        demo = replace(settings, targets=targets)
        none = {t.name: (None, "none (local emulator)") for t in targets}
        if given_dir is not None:
            return await run_bench(replace(demo, images_dir=given_dir), tokens=none, log=log, handle_signals=True)
        from .samples import generate

        with tempfile.TemporaryDirectory(prefix="batchcap-bench-") as tmp:
            await anyio.to_thread.run_sync(lambda: generate(Path(tmp), settings.images, seed=settings.seed))
            return await run_bench(replace(demo, images_dir=Path(tmp),
                                           extra={"images_note": f"{settings.images} generated sample images"}),
                                   tokens=none, log=log, handle_signals=True)


def run_from_args(ns: argparse.Namespace) -> int:
    """Run ``batchcap bench`` from parsed flags.

    0 report written (1 if nothing succeeded), 2 bad flags, 3 aborted, 130 interrupted (partial report written).
    """
    from .report import render_results, write_reports

    err = sys.stderr

    def log(line: str) -> None:
        print(line, file=err, flush=True)

    try:
        settings = settings_from_args(ns)
        given = _images_dir(ns)
    except UsageError as exc:
        print(f"batchcap bench: error: {exc}", file=err)
        return EXIT_USAGE
    try:
        from .cli import run_async

        result = run_async(lambda: _main(settings, given, log), ns.event_loop)
    except BenchAborted as exc:
        print(f"batchcap bench: aborted: {exc}", file=err)
        return EXIT_ABORTED
    except UsageError as exc:
        print(f"batchcap bench: error: {exc}", file=err)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"batchcap bench: aborted: {exc}", file=err)
        return EXIT_ABORTED
    paths = write_reports(result, ns.out, plot_format=ns.plot_format)
    print(render_results(result))
    log(f"batchcap bench: wrote {paths.json}, {paths.markdown}" + (f", {paths.plot}" if paths.plot else ""))
    if paths.plot_note:
        log(f"batchcap bench: {paths.plot_note}")
    if result.stopped == "interrupted":
        log("batchcap bench: interrupted; the report holds the steps measured before Ctrl-C")
        return EXIT_INTERRUPTED
    if not any(r.stats.ok for t in result.targets for r in t.steps):
        log("batchcap bench: no target returned a caption; see the notes and error counts in bench.md")
        return EXIT_NOTHING
    return EXIT_OK
