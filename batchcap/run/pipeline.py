"""``run()``: ask every image of a folder each task the journal does not answer yet, as a table of contents.

    plan the tasks (exit 2 if they do not fit) -> read the journal's index (and what it spent) -> say which
    answers are stale -> price the targets (``prices``) -> take the journal -> write the manifest -> start the
    writer and the stages -> drain -> close the journal, write the manifest, report the stop (if any)

The stages are in ``stages``; one image's attempts in ``attempt``; every run-level stop decision in ``guard``
(this module only reports its verdict).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from batchcap.aio import first_leaf
from batchcap.config import RunConfig, Target
from batchcap.errors import JournalError, RunAborted
from batchcap.flow.budget import Budget, BudgetGate
from batchcap.flow.ratelimit import Limiter
from batchcap.flow.retry import RetryPolicy
from batchcap.flow.suspend import SuspendDetector
from batchcap.journal import JournalIndex, JournalWriter, load_index, manifest_path
from batchcap.journal.meta import read_manifest
from batchcap.progress import NullProgress, Progress
from batchcap.run.assemble import captions_for, open_input, plan_for, preparer_for, run_targets
from batchcap.run.attempt import Captioner, Captions
from batchcap.run.guard import budget_stop, first_stop
from batchcap.run.manifest import Manifest
from batchcap.run.plan import (
    Plan,
    Planner,
    legacy_current,
    legacy_parts,
    planner_for,
    spec_history,
    stale_notes,
)
from batchcap.run.prices import cached_prices, price_targets
from batchcap.run.route import Router
from batchcap.run.stages import Stages
from batchcap.run.stats import RunStats
from batchcap.service.auth import Secret
from batchcap.service.client import CaptionClient
from batchcap.service.protocols import OpenAIChat
from batchcap.source.datasets import Source

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
    stop: anyio.Event | None = None,
    limiter: Limiter | None = None,
    targets: tuple[Target, ...] | None = None,
    stop_now: anyio.Event | None = None,
    source: Source | None = None,
    notes: Callable[[str], None] | None = None,
) -> RunStats:
    """Ask every image of ``cfg.input_dir`` each task not yet answered in ``cfg.out`` as this run asks it. Raises
    RunAborted on a run-level fault, UsageError (nothing sent) for tasks that do not fit the target.

    ``stop``, once set, ends the run as Ctrl-C does (``stats.interrupted``: no request starts after it, those in
    flight finish and are written), for a caller that watches signals itself; ``stop_now`` as a second Ctrl-C
    does (at once). ``limiter`` replaces the run's own ``RateLimiter`` (rate, burst)
    (a Ray job shares one across its workers). ``targets``: the ``--target``s already resolved by the caller
    (``run_targets(cfg)``), so they are parsed once. ``source``: ``cfg.input_dir`` already opened by the caller
    (the CLI opens it to check it before anything else: ``open_input``); None: opened here. ``notes`` hears the
    few lines worth saying before the run starts (answers made with other settings, per task; each target's
    price, or that it has none).
    """
    progress = progress or NullProgress()
    stats = RunStats()
    started = time.monotonic()
    if targets is None:
        targets = run_targets(cfg)  # checked before anything is read or sent
    suspend = SuspendDetector(now=started, wall=time.time())
    budget = cfg.budget
    gate = BudgetGate(Budget(max_cost=budget.max_cost, max_images=budget.max_images)) if budget.capped else None
    if source is None:
        source = await anyio.to_thread.run_sync(lambda: open_input(cfg, token))
    plan = plan_for(cfg, targets, source)  # the tasks fit the targets, templates and schemas are sound: else exit 2
    captions = captions_for(cfg, targets, stats, progress, token=token, policy=policy, seed=seed, limiter=limiter,
                            suspend=suspend, budget=gate, plan=plan)
    index = await anyio.to_thread.run_sync(lambda: load_index(cfg.out, retry_failed=cfg.retry_failed))
    stats.earlier_errors = index.error_final if not cfg.retry_failed else 0
    planner = _planner(cfg, plan, index, say := notes or (lambda text: None))
    await _price(cfg, captions, stats, index, gate, notes=say)
    writer = JournalWriter(cfg.out)
    writer.open()
    manifest = Manifest(cfg, index, started_at=time.time(), source=source.describe(), tasks=plan.manifest_tasks())
    if stats.spend.prices or gate is not None or stats.spend.notes:
        manifest.spend = stats.spend.to_dict()
    try:
        manifest.write_start()
    except JournalError:
        writer.close()
        raise
    stages = Stages(cfg, index=index, writer=writer, captioner=captions, stats=stats, progress=progress,
                    source=source, planner=planner, on_scan_done=on_scan_done,
                    preparer=preparer_for(cfg, targets, plan), suspend=suspend)
    try:
        async with stages.captioner, anyio.create_task_group() as tg:
            tg.start_soon(stages.write_until_drained)
            await stages.produce_until_stopped(handle_signals=handle_signals, stop=stop, stop_now=stop_now)
    except JournalError as exc:
        raise RunAborted(str(exc), kind="journal") from None
    except BaseExceptionGroup as group:
        if (journal := first_leaf(group, JournalError)) is not None:
            raise RunAborted(str(journal), kind="journal") from None
        raise
    finally:
        stats.elapsed = time.monotonic() - started
        writer.close()
        _tally(stats, stages, planner, gate)
        manifest.write_end(stats)
        progress.close()
    if stats.aborted:
        raise RunAborted(stats.aborted, kind=stats.abort_kind or "other")
    return stats


def _tally(stats: RunStats, stages: Stages, planner: Planner, gate: BudgetGate | None) -> None:
    """After the drain: what the planner decided, the run-level stop (if any), each target's share and notes."""
    stats.stale, stats.kept_stale, stats.copied = planner.stale, planner.kept_stale, planner.copied
    stats.skipped = max(0, stats.skipped - planner.stale.total())  # "already done": not the stale
    if not stages.writer_failed and (verdict := first_stop(stages.failures)) is not None:
        stats.aborted, stats.abort_kind = verdict.message, verdict.kind
        if stats.abort_kind == "budget" and gate is not None and gate.budget.closed:
            stats.aborted = budget_stop(gate.budget).message  # drained: the final figures
    if isinstance(stages.captioner, Router):
        stats.drained = stages.captioner.drained
        stats.targets = stages.captioner.summary()
    for captioner in _captioners(stages.captioner):  # providers found without a price during the run
        for note in captioner.meter.notes if captioner.meter is not None else ():
            stats.spend.note(note)


def _planner(cfg: RunConfig, plan: Plan, index: JournalIndex, notes: Callable[[str], None]) -> Planner:
    """Issue 16: what each image still needs asked; says first which answers are stale (made with other settings
    than this run's, per task, as the manifest traces them)."""
    previous = read_manifest(cfg.out) if index.lines else None
    legacy = legacy_parts(previous)
    current = legacy_current(plan, legacy)
    for line in stale_notes(plan, index, spec_history(previous, legacy), keep_stale=cfg.tasks.keep_stale,
                            legacy_current=current):
        notes(line)
    return planner_for(cfg, plan, index, previous)


async def _price(cfg: RunConfig, captions: Captions, stats: RunStats, index: JournalIndex, gate: BudgetGate | None,
                 *, notes: Callable[[str], None]) -> None:
    """Issue 18: what earlier runs spent (the cap is for the whole job), and each target's prices."""
    spend, budget = stats.spend, cfg.budget
    spend.earlier_usd, spend.earlier_images = index.spent_usd, index.spent_images
    spend.max_cost, spend.max_images = budget.max_cost, budget.max_images
    if gate is not None:
        gate.budget.spent, gate.budget.spent_images = index.spent_usd, _images_done(index)
    lanes = [(c.target, c.client, c.meter,
              c.client.adapter.model if isinstance(c.client, CaptionClient) and isinstance(c.client.adapter, OpenAIChat)
              else None) for c in _captioners(captions)]
    cached = cached_prices(manifest_path(cfg.out)) if any(m is not None for _, _, m, _ in lanes) else {}
    await price_targets(lanes, settings=budget, spend=spend, cached=cached, note=notes)
    spend.announced = len(spend.notes)


def _images_done(index: JournalIndex) -> int:
    """Images done by earlier runs, for ``--max-images``: the answers with one task, else the most answered task's
    (each image counts once)."""
    per_task = index.latest_by_spec()
    if len(per_task) <= 1:
        return len(index)
    return max(sum(counts.values()) for counts in per_task.values())


def _captioners(captions: Captions) -> list[Captioner]:
    """Every target's captioner: the router's lanes, or the one."""
    found = [lane.captioner for lane in captions.lanes] if isinstance(captions, Router) else [captions]
    return [c for c in found if isinstance(c, Captioner)]

