"""A captioning run: scan -> read -> send -> journal, resumable, bounded in memory.

One job per module: ``pipeline`` (``run()``, a table of contents), ``stages`` (readers, senders, the writer,
as methods of one object), ``attempt`` (one image's attempts), ``guard`` (the pure run-level stop rule),
``queues`` (the bounded feed and sink), ``manifest`` (the run manifest), ``stats`` (``RunStats``),
``sidecar`` (``--sidecar`` files), ``malloc`` (the CLI's allocator setting). Other packages import from here.
"""

from __future__ import annotations

from batchcap.errors import RunAborted
from batchcap.run.guard import REFUSAL_LIMIT, RunGuard, Stop, StopKind
from batchcap.run.malloc import tune_malloc
from batchcap.run.manifest import manifest_path
from batchcap.run.pipeline import lane_targets, preparer_for, run
from batchcap.run.stats import RunStats

__all__ = ["REFUSAL_LIMIT", "RunAborted", "RunGuard", "RunStats", "Stop", "StopKind", "lane_targets", "manifest_path", "preparer_for", "run",
           "tune_malloc"]
