"""A captioning run: scan -> read -> send -> journal, resumable, bounded in memory.

One job per module: ``pipeline`` (``run()``, a table of contents), ``assemble`` (the run's parts, built once
from its config), ``stages`` (readers, senders, the writer, as methods of one object), ``captions`` (the seam the senders call),
``attempt`` (one image's tasks and attempts), ``guard`` (every run-level stop decision, pure), ``route`` (several targets), ``queues`` (the bounded feed
and sink), ``dedupe`` (copies within a run), ``manifest`` (the run manifest), ``stats`` (``RunStats``),
``sidecar`` (``--sidecar`` files), ``endpoint`` (a run at a named Endpoint, woken and put back to sleep),
``malloc`` (the CLI's allocator setting). Other packages import from here.
"""

from __future__ import annotations

from batchcap.errors import RunAborted
from batchcap.run.assemble import open_input, preparer_for, run_targets
from batchcap.run.endpoint import run_with_endpoint
from batchcap.run.guard import REFUSAL_LIMIT, RunGuard, Stop, StopKind
from batchcap.run.malloc import tune_malloc
from batchcap.run.manifest import manifest_path
from batchcap.run.pipeline import run
from batchcap.run.stats import RunStats

__all__ = ["REFUSAL_LIMIT", "RunAborted", "RunGuard", "RunStats", "Stop", "StopKind", "manifest_path", "open_input",
           "preparer_for", "run", "run_targets", "run_with_endpoint", "tune_malloc"]
