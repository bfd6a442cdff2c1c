"""A run's parts, built once from its config: the targets it sends to (each a lane: client, limiter, retry policy,
guard, adaptive limit) and the image preparation every one of them shares.

    targets = run_targets(cfg)                 # --target NAME=SPEC resolved once, checked before anything is sent
    plan = plan_for(cfg, targets)              # the tasks on those targets (batchcap.run.plan): exit 2 if unfit
    captions = captions_for(cfg, targets, stats, progress, token=token, plan=plan)
    preparer = preparer_for(cfg, targets, plan)  # the one file -> what is sent path (run, bench, check)
    source = open_input(cfg, token)            # INPUT: a folder, parquet, WebDataset, a URL (source.datasets)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from batchcap.config import RunConfig, Target, resolve_targets
from batchcap.errors import ConfigError, UsageError
from batchcap.flow.budget import BudgetGate
from batchcap.flow.concurrency import AdaptiveLimit, ConcurrencyLimiter
from batchcap.flow.ratelimit import Limiter, RateLimiter
from batchcap.flow.retry import RetryPolicy
from batchcap.flow.suspend import SuspendDetector
from batchcap.models import Record
from batchcap.prepare import PreparePool
from batchcap.progress import Progress
from batchcap.service.auth import Secret, find_token
from batchcap.service.connect import make_client
from batchcap.service.protocols import Adapter, OpenAIChat, make_adapter
from batchcap.source.datasets import Source, open_source

from .attempt import Captioner, Captions, TaskAsk
from .guard import RunGuard
from .plan import LaneTasks, Plan, build_plan
from .prices import hourly_price
from .route import Lane, Router
from .spend import Meter
from .stats import RunStats

__all__ = ["captions_for", "open_input", "plan_for", "preparer_for", "run_targets"]


def open_input(cfg: RunConfig, token: Secret | None = None) -> Source:
    """The run's INPUT as a source (``ConfigError`` when it is none batchcap reads: exit 2, nothing sent);
    ``--sidecar`` needs a local folder of images, where captions can sit beside them."""
    source = open_source(cfg.source.input_dir, image_column=cfg.source.image_column,
                         follow_symlinks=cfg.source.follow_symlinks,
                         token=token.reveal() if token is not None else None)
    if cfg.sidecar and source.root is None:
        raise ConfigError(f"--sidecar writes each caption beside its image file, and {source.location} is a "
                          f"{source.kind} source, not a local folder of images; use `batchcap export` instead")
    return source


def run_targets(cfg: RunConfig) -> tuple[Target, ...]:
    """The run's ``--target``s, each as the config its lane runs with: a bare SPEC takes the run's settings (its
    limits, preparation, quality), a ``.toml`` profile keeps its own limits; the run's ``--token-file`` is every
    target's that names none of its own (as ``bench --token-file PATH``). Empty without ``--target``."""
    if not cfg.routing.targets:
        return ()
    try:
        targets = resolve_targets(cfg.routing.targets, api_base=cfg.target.api_base,
                                  prices=cfg.routing.price_per_hour)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    out = []
    for t in targets:
        if t.cfg.target.endpoint_name:
            raise ConfigError(f"--target {t.name}={t.spec}: an Endpoint by name is for bench so far; in a run, use "
                              "--endpoint-name NAMESPACE/NAME (one target) or the Endpoint's URL")
        limits = t.cfg.limits if t.profile else cfg.limits
        target = t.cfg.target
        if target.token_file is None and cfg.target.token_file is not None:  # the run's --token-file: every target
            target = replace(target, token_file=cfg.target.token_file)
        if target.space is not None and not t.profile:  # the run's --space-api (unless SPEC names one), --space-input
            target = replace(target, space_api=target.space_api or cfg.target.space_api,
                             space_inputs=cfg.target.space_inputs)
        lane = replace(cfg, target=target, limits=limits, routing=replace(cfg.routing, targets=()))
        out.append(replace(t, cfg=lane.validate(), token_file=target.token_file))
    return tuple(out)


def plan_for(cfg: RunConfig, targets: tuple[Target, ...], source: Source | None = None) -> Plan:
    """The run's tasks on its targets (``batchcap.run.plan``); ``UsageError`` before anything is sent. ``source``
    (the opened INPUT) names the variables its images bring (a dataset's columns: ``ImageJob.context``)."""
    extra: Collection[str] = () if source is None else source.context_names()
    return build_plan(cfg, [t.cfg for t in targets], extra=extra)


def preparer_for(cfg: RunConfig, targets: tuple[Target, ...], plan: Plan | None = None) -> PreparePool:
    """What is sent of each file (``--max-side 0``: files as they are, inside the pool), as every target's adapter
    wraps it, for each task (its prompt at its longest, its schema). ``bench`` and ``check`` build theirs the same
    way (``PreparePool.for_adapters``), so what they measure and estimate is what a run sends."""
    configs = [t.cfg for t in targets] if targets else [cfg]
    if plan is None:
        adapters = [make_adapter(c.target) for c in configs]
    else:
        adapters = [_longest(ask.adapter, plan.task(name).prompt_budget)
                    for c, lane in zip(configs, plan.lanes, strict=True)
                    for name, ask in task_asks(c, plan, lane).items()]
    return PreparePool.for_adapters(cfg.prepare, adapters)


def _longest(adapter: Adapter, budget: int) -> Adapter:
    """A chat adapter whose prompt is as long as the task's can get (the body limit must hold for every image)."""
    return replace(adapter, prompt="x" * budget) if isinstance(adapter, OpenAIChat) else adapter


def captions_for(
    cfg: RunConfig, targets: tuple[Target, ...], stats: RunStats, progress: Progress, *, token: Secret | None,
    policy: RetryPolicy | None = None, seed: int | None = None, limiter: Limiter | None = None,
    suspend: SuspendDetector | None = None, budget: BudgetGate | None = None, plan: Plan | None = None,
) -> Captions:
    """What the senders call: the one target's captioner, or a router over one lane per ``--target``. ``budget``:
    the run's caps, shared by every lane (issue 18)."""
    plan = plan or plan_for(cfg, targets)
    if not targets:
        return captioner_for(cfg, stats, progress, token=token, policy=policy, seed=seed, label=cfg.target.label,
                             limiter=limiter, suspend=suspend, budget=budget, per_hour=hourly_price(cfg), plan=plan,
                             lane=plan.lanes[0])
    released: list[Record] = []
    lanes = []
    for target, lane_tasks in zip(targets, plan.lanes, strict=True):
        lane_token, _ = find_token(target.token_file)
        lane_cfg = target.cfg
        captioner = captioner_for(lane_cfg, stats, progress, token=lane_token, policy=policy, seed=seed,
                                  label=f"{target.name}={lane_cfg.target.label}", released=released,
                                  suspend=suspend, budget=budget, per_hour=target.price_per_hour, plan=plan,
                                  lane=lane_tasks)
        lanes.append(Lane(target.name, captioner, lane_cfg.limits.ceiling, price_per_hour=target.price_per_hour))
    return Router(lanes, route=cfg.routing.route, released=released)


def task_asks(cfg: RunConfig, plan: Plan, lane: LaneTasks, *, base: Adapter | None = None) -> dict[str, TaskAsk]:
    """Per task, how this target asks it: the adapter (``base``: the client's own, else the target's) with the
    task's generation settings and response_format."""
    base = base if base is not None else make_adapter(cfg.target)
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


def captioner_for(
    cfg: RunConfig, stats: RunStats, progress: Progress, *, token: Secret | None, policy: RetryPolicy | None,
    seed: int | None, label: str, plan: Plan, lane: LaneTasks, released: list[Record] | None = None,
    limiter: Limiter | None = None, suspend: SuspendDetector | None = None, budget: BudgetGate | None = None,
    per_hour: float | None = None,
) -> Captioner:
    """One target's machinery: client, limiter, retry policy, guard, adaptive limit, quality gates, how it asks
    each task, and what its attempts cost (a chat target's usage, priced later by ``run.prices``; an Endpoint's
    busy time per hour)."""
    target, limits = cfg.target, cfg.limits
    client = make_client(target, token=token, timeout=limits.timeout, connections=limits.ceiling,
                         max_wait=limits.max_wait)
    tasks = task_asks(cfg, plan, lane, base=client.adapter)
    meter = None
    if target.api == "openai" or per_hour is not None:
        meter = Meter(label, per_hour=per_hour, max_tokens=target.max_tokens)
    return Captioner(
        client,
        limiter=limiter if limiter is not None else RateLimiter(cfg.request_rate, limits.burst),
        policy=policy or RetryPolicy(retries=limits.retries, wait_budget=limits.max_wait),
        guard=RunGuard(url=target.url, has_token=token is not None, max_wait=limits.max_wait),
        stats=stats,
        progress=progress,
        target=label,
        seed=seed,
        senders=limits.ceiling,
        released=released,
        concurrency=adaptive_limit(cfg),
        quality=cfg.quality,
        prompt=target.prompt if target.takes_prompt else None,
        suspend=suspend,
        tasks=tasks,
        meter=meter,
        budget=budget,
    )


def adaptive_limit(cfg: RunConfig) -> ConcurrencyLimiter | None:
    """The adaptive limit for ``--concurrency N`` (None for ``fixed:N``). It starts at 8 (or N if lower), not 1:
    three round trips of slow start saved (Little's-law row 0.94 -> 0.96 of c/L in benchmarks/), and 8
    requests queued on a one-at-a-time server answer within 8 service times, far inside the default timeout;
    the first cut brings the limit down from there."""
    if not cfg.limits.adaptive:
        return None
    n = cfg.limits.ceiling
    return ConcurrencyLimiter(AdaptiveLimit(n, initial=min(8, n)))
