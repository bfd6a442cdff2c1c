"""``run()``: caption every image of a folder that the journal does not hold yet, as a table of contents.

    read the journal's index -> take the journal -> write the manifest -> start the writer and the stages
    -> drain -> close the journal, write the manifest, report the stop (if any)

The stages are in ``stages``; one image's attempts in ``attempt``; the run-level stop rule in ``guard``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from batchcap.aio import first_leaf, leaves
from batchcap.client import CaptionClient
from batchcap.config import RunConfig, Secret
from batchcap.errors import JournalError, RunAborted
from batchcap.journal import JournalIndex, JournalWriter, load_index
from batchcap.prepare import PreparePool, wire_size_for
from batchcap.progress import NullProgress, Progress
from batchcap.protocols import make_adapter
from batchcap.ratelimit import RateLimiter
from batchcap.retry import RetryPolicy

from .attempt import Captioner
from .guard import RunGuard
from .manifest import Manifest
from .stages import Stages
from .stats import RunStats

__all__ = ["run"]


async def run(
    cfg: RunConfig,
    *,
    token: Secret | None = None,
    progress: Progress | None = None,
    policy: RetryPolicy | None = None,
    handle_signals: bool = False,
    on_scan_done: Callable[[], None] | None = None,
    seed: int | None = None,
) -> RunStats:
    """Caption every image of ``cfg.input_dir`` not yet done in ``cfg.out``. Raises RunAborted on a run-level fault."""
    progress = progress or NullProgress()
    stats = RunStats()
    started = time.monotonic()
    index = await anyio.to_thread.run_sync(lambda: load_index(cfg.out, retry_failed=cfg.retry_failed))
    stats.earlier_errors = index.error_final if not cfg.retry_failed else 0
    writer = JournalWriter(cfg.out)
    writer.open()
    manifest = Manifest(cfg, index, started_at=time.time())
    try:
        manifest.write_start()
    except JournalError:
        writer.close()
        raise
    stages = _stages(cfg, index, writer, stats, progress, token=token, policy=policy, seed=seed,
                     on_scan_done=on_scan_done)
    try:
        async with stages.captioner.client, anyio.create_task_group() as tg:
            tg.start_soon(stages.write_until_drained)
            await stages.produce_until_stopped(handle_signals=handle_signals)
    except JournalError as exc:
        raise RunAborted(str(exc), kind="journal") from None
    except BaseExceptionGroup as group:
        if (journal := first_leaf(group, JournalError)) is not None:
            raise RunAborted(str(journal), kind="journal") from None
        raise
    finally:
        stats.elapsed = time.monotonic() - started
        writer.close()
        if not stages.writer_failed:
            stats.aborted, stats.abort_kind = _first_stop(stages.failures)
        manifest.write_end(stats)
        progress.close()
    if stats.aborted:
        raise RunAborted(stats.aborted, kind=stats.abort_kind or "other")
    return stats


def _stages(
    cfg: RunConfig, index: JournalIndex, writer: JournalWriter, stats: RunStats, progress: Progress, *,
    token: Secret | None, policy: RetryPolicy | None, seed: int | None, on_scan_done: Callable[[], None] | None,
) -> Stages:
    """Wire one run: the client, the limiter, the policy and the guard behind the senders."""
    adapter = make_adapter(cfg)
    client = CaptionClient(cfg.url, adapter, token=token, timeout=cfg.timeout, connections=cfg.concurrency)
    captioner = Captioner(
        client,
        limiter=RateLimiter(cfg.request_rate, cfg.burst),
        policy=policy or RetryPolicy(retries=cfg.retries, wait_budget=cfg.max_wait),
        guard=RunGuard(url=cfg.url, has_token=token is not None, max_wait=cfg.max_wait),
        stats=stats,
        progress=progress,
        target=cfg.target,
        seed=seed,
    )
    preparer = None
    if cfg.max_side:  # issue 8: every image prepared before it is sent; 0 = files as they are
        preparer = PreparePool(cfg.prepare_settings(), wire_size=wire_size_for(adapter))
    return Stages(cfg, index=index, writer=writer, captioner=captioner, stats=stats, progress=progress,
                  on_scan_done=on_scan_done, preparer=preparer)


def _first_stop(failures: list[BaseException]) -> tuple[str | None, str | None]:
    """The first run-level stop (message, kind); anything unexpected is re-raised (a bug, not a user error)."""
    for exc in failures:
        found = leaves(exc)
        for leaf in found:
            if isinstance(leaf, RunAborted):
                return str(leaf), leaf.kind
            if isinstance(leaf, JournalError):
                return str(leaf), "journal"
        for leaf in found:
            if not isinstance(leaf, anyio.get_cancelled_exc_class() | anyio.BrokenResourceError):
                raise leaf
    return None, None
