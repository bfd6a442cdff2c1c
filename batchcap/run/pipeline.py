"""``run()``: caption every image of a folder that the journal does not hold yet, as a table of contents.

    read the journal's index -> take the journal -> write the manifest -> start the writer and the stages
    -> drain -> close the journal, write the manifest, report the stop (if any)

The stages are in ``stages``; one image's attempts in ``attempt``; the run-level stop rule in ``guard``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import anyio

from batchcap.aio import first_leaf, leaves
from batchcap.config import RunConfig, Secret, find_token
from batchcap.errors import ConfigError, JournalError, RunAborted, UsageError
from batchcap.flow.concurrency import AdaptiveLimit, ConcurrencyLimiter
from batchcap.flow.ratelimit import Limiter, RateLimiter
from batchcap.flow.retry import RetryPolicy
from batchcap.journal import JournalWriter, load_index
from batchcap.models import Record
from batchcap.prepare import PreparePool, largest_wire_size, wire_size_for
from batchcap.progress import NullProgress, Progress
from batchcap.run.attempt import Captioner, Captions, TaskAsk
from batchcap.run.guard import RunGuard
from batchcap.run.manifest import Manifest, manifest_path, read_manifest
from batchcap.run.plan import (
    LaneTasks,
    Plan,
    Planner,
    build_plan,
    legacy_current,
    legacy_parts,
    spec_history,
    stale_notes,
)
from batchcap.run.route import Lane, Router
from batchcap.run.stages import Stages
from batchcap.run.stats import RunStats
from batchcap.service.client import CaptionClient
from batchcap.service.protocols import Adapter, OpenAIChat, make_adapter
from batchcap.service.targets import Target, resolve_targets

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
    notes: Callable[[str], None] | None = None,
) -> RunStats:
    """Ask every image of ``cfg.input_dir`` each task not yet answered in ``cfg.out`` as this run asks it. Raises
    RunAborted on a run-level fault, UsageError (nothing sent) for tasks that do not fit the target.

    ``stop``, once set, ends the run as Ctrl-C does (``stats.interrupted``; what was captioned is written), for a
    caller that watches signals itself. ``limiter`` replaces the run's own ``RateLimiter(cfg.rate, cfg.burst)``
    (a Ray job shares one across its workers). ``notes`` gets the lines to show before the run starts (answers
    made with other settings, per task).
    """
    progress = progress or NullProgress()
    stats = RunStats()
    started = time.monotonic()
    plan = build_plan(cfg, [t.cfg for t in lane_targets(cfg)] if cfg.targets else ())  # tasks fit the targets?
    captions = _captions(cfg, stats, progress, token=token, policy=policy, seed=seed,  # checks --target first
                         limiter=limiter, plan=plan)
    index = await anyio.to_thread.run_sync(lambda: load_index(cfg.out, retry_failed=cfg.retry_failed))
    stats.earlier_errors = index.error_final if not cfg.retry_failed else 0
    previous = read_manifest(manifest_path(cfg.out)) if index.lines else None
    legacy = legacy_parts(previous)
    current = legacy_current(plan, legacy)
    if notes is not None:
        for line in stale_notes(plan, index, spec_history(previous, legacy), keep_stale=cfg.tasks.keep_stale,
                                legacy_current=current):
            notes(line)
    planner = Planner(plan, index, root=cfg.input_dir, keep_stale=cfg.tasks.keep_stale,
                      retry_failed=cfg.retry_failed, legacy_current=current, copies=cfg.dedupe != "off")
    writer = JournalWriter(cfg.out)
    writer.open()
    manifest = Manifest(cfg, index, started_at=time.time(), tasks=plan.manifest_tasks(), previous=previous)
    try:
        manifest.write_start()
    except JournalError:
        writer.close()
        raise
    stages = Stages(cfg, index=index, writer=writer, captioner=captions, stats=stats, progress=progress,
                    planner=planner, on_scan_done=on_scan_done, preparer=_preparer(cfg))
    try:
        async with stages.captioner, anyio.create_task_group() as tg:
            tg.start_soon(stages.write_until_drained)
            await stages.produce_until_stopped(handle_signals=handle_signals, stop=stop)
    except JournalError as exc:
        raise RunAborted(str(exc), kind="journal") from None
    except BaseExceptionGroup as group:
        if (journal := first_leaf(group, JournalError)) is not None:
            raise RunAborted(str(journal), kind="journal") from None
        raise
    finally:
        stats.elapsed = time.monotonic() - started
        stats.stale, stats.kept_stale, stats.copied = planner.stale, planner.kept_stale, planner.copied
        writer.close()
        if not stages.writer_failed:
            stats.aborted, stats.abort_kind = _first_stop(stages.failures)
        if isinstance(stages.captioner, Router):
            stats.drained = stages.captioner.drained
            stats.targets = stages.captioner.summary()
        manifest.write_end(stats)
        progress.close()
    if stats.aborted:
        raise RunAborted(stats.aborted, kind=stats.abort_kind or "other")
    return stats


def _preparer(cfg: RunConfig) -> PreparePool | None:
    """Issue 8: every image prepared before it is sent (``--max-side 0``: files as they are). The body limit is
    counted as each target's adapter wraps the image; with several targets an image must fit them all."""
    if not cfg.max_side:
        return None
    configs = [t.cfg for t in lane_targets(cfg)] if cfg.targets else [cfg]
    wire = largest_wire_size([wire_size_for(make_adapter(c)) for c in configs])
    return PreparePool(cfg.prepare_settings(), wire_size=wire)


def _captions(
    cfg: RunConfig, stats: RunStats, progress: Progress, *, token: Secret | None, policy: RetryPolicy | None,
    seed: int | None, limiter: Limiter | None = None, plan: Plan | None = None,
) -> Captions:
    """What the senders call: the one target's client, limiter, policy and guard, or one lane per --target."""
    plan = plan or build_plan(cfg, [t.cfg for t in lane_targets(cfg)] if cfg.targets else ())
    if cfg.targets:
        return _router(cfg, stats, progress, policy=policy, seed=seed, plan=plan)
    return _captioner(cfg, stats, progress, token=token, policy=policy, seed=seed, target=cfg.target,
                      limiter=limiter, lane=plan.lanes[0], plan=plan)


def _task_asks(cfg: RunConfig, plan: Plan, lane: LaneTasks) -> dict[str, TaskAsk]:
    """Per task, how this target asks it: the adapter with the task's generation settings and response_format."""
    base = make_adapter(cfg)
    out = {}
    for t in plan.tasks:
        adapter: Adapter = base
        if isinstance(base, OpenAIChat):
            gen = lane.generation[t.name]
            adapter = replace(base, prompt=t.template.text or base.prompt, max_tokens=gen["max_tokens"],
                              temperature=gen["temperature"],
                              response_format=None if t.schema is None else t.schema.response_format("openai"))
        out[t.name] = TaskAsk(adapter, t.schema, lane.prints[t.name])
    return out


def _captioner(
    cfg: RunConfig, stats: RunStats, progress: Progress, *, token: Secret | None, policy: RetryPolicy | None,
    seed: int | None, target: str, lane: LaneTasks, plan: Plan, released: list[Record] | None = None,
    limiter: Limiter | None = None,
) -> Captioner:
    tasks = _task_asks(cfg, plan, lane)
    client = CaptionClient(cfg.url, tasks[plan.primary].adapter, token=token, timeout=cfg.timeout,
                           connections=cfg.concurrency)
    return Captioner(
        client,
        limiter=limiter if limiter is not None else RateLimiter(cfg.request_rate, cfg.burst),
        policy=policy or RetryPolicy(retries=cfg.retries, wait_budget=cfg.max_wait),
        guard=RunGuard(url=cfg.url, has_token=token is not None, max_wait=cfg.max_wait),
        stats=stats,
        progress=progress,
        target=target,
        seed=seed,
        senders=cfg.concurrency,
        released=released,
        concurrency=_adaptive(cfg),
        quality=cfg.quality(),
        prompt=cfg.prompt if cfg.api == "openai" else None,
        tasks=tasks,
    )


def _router(cfg: RunConfig, stats: RunStats, progress: Progress, *, policy: RetryPolicy | None,
            seed: int | None, plan: Plan) -> Router:
    """One lane per ``--target``: the run's limits, unless the target is a profile with its own."""
    released: list[Record] = []
    lanes = []
    for target, lane_tasks in zip(lane_targets(cfg), plan.lanes, strict=True):
        token, _ = find_token(target.token_file)
        lane_cfg = target.cfg
        captioner = _captioner(lane_cfg, stats, progress, token=token, policy=policy, seed=seed,
                               target=f"{target.name}={lane_cfg.target}", released=released, lane=lane_tasks,
                               plan=plan)
        lanes.append(Lane(target.name, captioner, lane_cfg.concurrency, price_per_hour=target.price_per_hour))
    return Router(lanes, route=cfg.route, released=released)


def _adaptive(cfg: RunConfig) -> ConcurrencyLimiter | None:
    """The adaptive limit for ``--concurrency N`` (None for ``fixed:N``). It starts at 8 (or N if lower), not 1:
    three round trips of slow start saved (Little's-law row 0.94 -> 0.96 of c/L in benchmarks/), and 8
    requests queued on a one-at-a-time server answer within 8 service times, far inside the default timeout;
    the first cut brings the limit down from there."""
    if cfg.concurrency_mode != "adaptive":
        return None
    return ConcurrencyLimiter(AdaptiveLimit(cfg.concurrency, initial=min(8, cfg.concurrency)))


def lane_targets(cfg: RunConfig) -> tuple[Target, ...]:
    """The run's ``--target``s as configs: a bare SPEC takes the run's limits; a profile keeps its own."""
    try:
        targets = resolve_targets(cfg.targets, api_base=cfg.api_base, prices=cfg.price_per_hour)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    out = []
    for t in targets:
        if t.cfg.endpoint_name:
            raise ConfigError(f"--target {t.name}={t.spec}: an Endpoint by name is for bench so far; in a run, use "
                              "--endpoint-name NAMESPACE/NAME (one target) or the Endpoint's URL")
        if not t.spec.endswith(".toml"):
            lane = replace(cfg, api=t.cfg.api, model=t.cfg.model, endpoint=t.cfg.endpoint, base_url=t.cfg.base_url,
                           api_base=t.cfg.api_base, targets=(), price_per_hour=())
            t = replace(t, cfg=lane.validate())
        out.append(t)
    return tuple(out)


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
