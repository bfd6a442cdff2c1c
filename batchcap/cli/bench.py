"""``batchcap bench``: run the bench, write its reports, print the verdict, pick the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from batchcap.aio import run_async
from batchcap.bench import add_arguments as add_bench_arguments
from batchcap.bench import bench, images_dir, render_results, settings_from_args, write_reports
from batchcap.site import write_bench_html

from .exit_codes import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK

__all__ = ["HELP", "PREFIX", "add_arguments", "main"]

HELP = "benchmark targets (e.g. an Endpoint vs the free API) on the same images"
PREFIX = "batchcap bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_bench_arguments(p)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 report written (1 if nothing succeeded), 2 bad flags, 3 aborted, 130 interrupted (partial report)."""
    settings = settings_from_args(ns)
    given = images_dir(ns)
    result = run_async(lambda: bench(settings, given, _log), ns.event_loop)
    paths = write_reports(result, ns.out, plot_format=ns.plot_format)
    page = write_bench_html(orjson.loads(paths.json.read_bytes()), ns.out)
    print(render_results(result))
    _log(f"batchcap bench: wrote {paths.json}, {paths.markdown}" + (f", {paths.plot}" if paths.plot else "")
         + f", {page} (a page to share: the folder is a Static Space)")
    if paths.plot_note:
        _log(f"batchcap bench: {paths.plot_note}")
    if result.stopped == "interrupted":
        _log("batchcap bench: interrupted; the report holds the steps measured before Ctrl-C")
        return EXIT_INTERRUPTED
    if not any(r.stats.ok for t in result.targets for r in t.steps):
        _log("batchcap bench: no target returned a caption; see the notes and error counts in bench.md")
        return EXIT_ERRORS
    return EXIT_OK
