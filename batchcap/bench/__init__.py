"""``batchcap bench``: is a paid Endpoint worth it against the free API, for these images, at what concurrency?

Each target is benchmarked in turn on the same images, with the project's own client and adapters::

    cold start (time to first caption) -> closed-loop sweep over --concurrency -> open-loop sweep over
    --arrival-rate -> summaries (stats) -> verdict -> bench.json, bench.md, bench.png (report)

One job per module: ``spec`` (targets and settings), ``runner`` (the measuring, per
target), ``send`` (one request as data), ``loadgen`` (closed/open-loop load, bounded), ``stats`` (the numbers,
pure), ``verdict`` (the words, pure), ``report`` (the files), ``demo`` (three local emulators), ``interrupt``
and ``environment`` (Ctrl-C, versions and machine). Every loop is bounded in requests and seconds, and the
whole bench by ``--max-time``. The CLI (``batchcap.cli.bench``) prints and picks exit codes; nothing here does.
"""

from __future__ import annotations

from batchcap.bench.demo import bench, demo_settings, demo_targets
from batchcap.bench.report import ReportPaths, render_results, write_reports
from batchcap.bench.runner import run_bench
from batchcap.bench.spec import DEMO_MODEL, BenchSettings, Target, parse_target, resolve_targets
from batchcap.bench.stats import BenchResult

__all__ = [
    "DEMO_MODEL",
    "BenchResult",
    "BenchSettings",
    "ReportPaths",
    "Target",
    "bench",
    "demo_settings",
    "demo_targets",
    "parse_target",
    "render_results",
    "resolve_targets",
    "run_bench",
    "write_reports",
]
