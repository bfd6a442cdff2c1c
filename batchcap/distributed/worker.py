"""What one Ray task does: ``batchcap.run`` over one shard, into that shard's own journal.

Imported in the Ray worker process; it does not import ray itself (the driver passes actor handles in).
"""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path
from typing import Any

from batchcap.aio import run_async
from batchcap.config import RunConfig
from batchcap.distributed.limiter import RemoteLimiter
from batchcap.distributed.plan import Split
from batchcap.distributed.tally import RemoteProgress
from batchcap.flow.concurrency import ConcurrencySpec
from batchcap.service.auth import Secret
from batchcap.source.shard import Shard

__all__ = ["STAT_FIELDS", "run_shard", "supports_shared_limiter"]

#: The RunStats counters a task sends back; the driver adds them up.
STAT_FIELDS = ("found", "skipped", "ok", "failed", "attempts", "retries", "throttled", "bytes_sent",
               "earlier_errors", "scan_problems", "sidecar_errors")


def supports_shared_limiter() -> bool:
    """Whether this batchcap's ``run()`` takes a ``limiter=`` (then the job shares one bucket actor)."""
    from batchcap import run

    return "limiter" in inspect.signature(run).parameters


def run_shard(
    cfg: RunConfig,
    shard: Shard,
    part: Path,
    token: Secret | None,
    hub: Any,
    limiter: Any | None,
    split: Split,
) -> dict[str, Any]:
    """Caption ``shard`` of ``cfg.input_dir`` into ``part``; the counters as a dict. Raises what ``run`` raises."""
    from batchcap import run

    concurrency = ConcurrencySpec(cfg.limits.concurrency.mode, split.concurrency)
    changes: dict[str, Any] = {"out": part, "shard": shard, "quiet": True, "concurrency": concurrency}
    kwargs: dict[str, Any] = {}
    if limiter is not None:
        kwargs["limiter"] = RemoteLimiter(limiter, cfg.request_rate)  # one bucket for the job: full rate and burst
    else:
        changes.update(rate=split.rate, burst=split.burst)  # no shared bucket: each worker its share
    progress = RemoteProgress(hub, prefix=f"shard {shard}: ")
    try:
        stats = run_async(partial(run, cfg.with_flat(changes), token=token, progress=progress, **kwargs))
    finally:
        progress.close()
    out = {name: getattr(stats, name) for name in STAT_FIELDS}
    out["errors_by_type"] = dict(stats.errors_by_type)
    out["interrupted"] = stats.interrupted
    out["elapsed"] = stats.elapsed
    return out
