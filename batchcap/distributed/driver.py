"""The driver of a Ray job: shards as tasks on a cluster, one shared limiter, progress over all, one merge.

    stats = run_distributed(cfg, workers=2, address="local", token=token, progress=TqdmProgress())

Tasks, not actors (measured, README "Past one machine"): a task costs ~1.4 ms to schedule on a warm local cluster,
Ray reuses its worker processes between tasks, and a task holds no state a failure could strand. At most
``workers`` shards run at once; the next starts when one finishes, so more shards than workers even out the
end of the job. ``address``: ``"local"`` starts a private cluster on 127.0.0.1 (no dashboard) that ends with
the job; anything else (or ``RAY_ADDRESS``) joins an existing one, whose nodes must all see the input folder
and ``--out``.

Ctrl-C or SIGTERM cancels the running shards; their journals are whole up to the last line (a torn one is
repaired on resume) and the merge still runs, so ``--out`` holds everything done. The same command resumes
every shard.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

from batchcap.config import RunConfig
from batchcap.distributed.limiter import SharedLimiter
from batchcap.distributed.plan import JobPlan, plan_job, split_limits
from batchcap.distributed.tally import ProgressHub
from batchcap.distributed.worker import STAT_FIELDS, run_shard, supports_shared_limiter
from batchcap.errors import BatchcapError, ConfigError, JobAborted
from batchcap.journal.merge import MergeStats, merge_journals
from batchcap.progress import NullProgress, Progress
from batchcap.service.auth import Secret

__all__ = ["JobAborted", "JobStats", "part_paths", "run_distributed"]


class JobStats:
    """The job's counters summed over its shards, and the merge that ended it."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors_by_type: Counter[str] = Counter()
        self.shards_done = 0
        self.interrupted = False
        self.elapsed = 0.0
        self.startup = 0.0  #: seconds to start (or join) the cluster, included in ``elapsed``
        self.shutdown = 0.0  #: seconds to stop it (and merge), included in ``elapsed``
        self.merge: MergeStats | None = None
        self.shared_limiter = False

    def add(self, shard_stats: dict[str, Any]) -> None:
        for name in STAT_FIELDS:
            self.counts[name] += int(shard_stats.get(name, 0))
        self.errors_by_type.update(shard_stats.get("errors_by_type", {}))
        self.shards_done += 1

    def __getattr__(self, name: str) -> int:
        if name in STAT_FIELDS:
            return self.counts[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"JobStats(ok={c['ok']}, failed={c['failed']}, skipped={c['skipped']}, shards={self.shards_done}, "
            f"elapsed={self.elapsed:.1f})"
        )


#: Read by Ray when it is imported: off, a node's IP is loopback and every Ray server binds 127.0.0.1 only.
#: (``_node_ip_address="127.0.0.1"`` alone is not enough: Ray 2.60 resolves it to the external address and
#: binds its gRPC servers to all interfaces; measured with ``ss -ltnp``.)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _import_ray(local: bool) -> Any:
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'batchcap[ray]'") from None
    return ray


def _address(address: str | None) -> str:
    """``--ray`` alone (``auto``): ``$RAY_ADDRESS`` if set, else a private local cluster."""
    if address in (None, "", "auto"):
        return os.environ.get("RAY_ADDRESS") or "local"
    return address


def _init(ray: Any, address: str, workers: int) -> None:
    if address == "local":
        # Loopback only, no dashboard: a private cluster for this job, sized to --workers.
        ray.init(address="local", num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, logging_level="ERROR", configure_logging=True)
    else:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's stop) ends the job the way Ctrl-C does; only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_distributed(
    cfg: RunConfig,
    *,
    workers: int,
    address: str | None = None,
    token: Secret | None = None,
    progress: Progress | None = None,
    shards: int | None = None,
    poll: float = 0.25,
) -> JobStats:
    """Caption ``cfg.input_dir`` into ``cfg.out`` with ``workers`` Ray workers; raises ``JobAborted``."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {workers})")
    address = _address(address)
    ray = _import_ray(address == "local")
    progress = progress or NullProgress()
    plan = plan_job(cfg.out, cfg.input_dir, workers, shards=shards)
    stats = JobStats()
    started = time.monotonic()
    abort: str | None = None
    try:
        owned = not ray.is_initialized()  # a caller (a test session) may have started Ray already
        if owned:
            _init(ray, address, workers)
        stats.startup = time.monotonic() - started
        try:
            with _sigterm_as_interrupt():  # after ray.init, which installs a SIGTERM handler of its own
                abort = _drive(ray, cfg, plan, workers, token, progress, stats, poll)
        finally:
            ended = time.monotonic()
            try:
                if owned:
                    ray.shutdown()
            finally:
                stats.merge = _merge(plan)
                stats.elapsed = time.monotonic() - started
                stats.shutdown = time.monotonic() - ended
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        progress.close()
    if abort:
        raise JobAborted(abort)
    return stats


def _drive(
    ray: Any, cfg: RunConfig, plan: JobPlan, workers: int, token: Secret | None,
    progress: Progress, stats: JobStats, poll: float,
) -> str | None:
    """Submit shards ``workers`` at a time until all are done; the first abort reason, if any."""
    hub = ray.remote(ProgressHub).options(num_cpus=0).remote()
    split = split_limits(cfg.request_rate, cfg.limits.burst, cfg.limits.ceiling, workers)
    limiter = None
    if supports_shared_limiter():
        limiter = ray.remote(SharedLimiter).options(num_cpus=0).remote(cfg.request_rate, cfg.limits.burst)
        stats.shared_limiter = True
    task = ray.remote(run_shard).options(num_cpus=1, max_retries=0)
    queue = list(plan.shards)
    running: dict[Any, Any] = {}
    abort: str | None = None
    try:
        while queue or running:
            while queue and not abort and len(running) < workers:
                shard = queue.pop(0)
                running[task.remote(cfg, shard, plan.part(shard), token, hub, limiter, split)] = shard
            if not running:
                break
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=poll, fetch_local=True)
            _report(ray, hub, progress)
            for ref in done:
                running.pop(ref)
                try:
                    stats.add(ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause
                    reason = str(cause) if isinstance(cause, BatchcapError) else f"{type(cause).__name__}: {cause}"
                    abort = abort or reason
                    for other in running:
                        ray.cancel(other)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)
        _settle(ray, list(running))
        raise
    _report(ray, hub, progress)
    return abort


def _settle(ray: Any, refs: list[Any], timeout: float = 10.0) -> None:
    """Let cancelled shards end (their writers close their journals) before the cluster goes."""
    with suppress(Exception):  # best effort on the way out: the journals are safe either way
        ray.wait(refs, num_returns=len(refs), timeout=timeout)


def _report(ray: Any, hub: Any, progress: Progress) -> None:
    found, ok, failed, note = ray.get(hub.take.remote())
    if found:
        progress.found(found)
    if ok or failed:
        progress.done(ok, failed)
    if note:
        progress.note(note)


def _merge(plan: JobPlan) -> MergeStats | None:
    """Fold every existing part (and the previous ``--out``) into ``--out``."""
    parts = [p for p in plan.parts if p.exists()]
    if plan.out.exists():
        parts.insert(0, plan.out)
    if not parts:
        return None
    return merge_journals(plan.out, parts)


def part_paths(out: Path) -> list[Path]:
    """The part journals a job over ``out`` has written so far (for tests and ``batchcap merge``)."""
    folder = out.with_name(out.name + ".parts")
    return sorted(folder.glob("part-*.jsonl"))
