"""``batchcap check DIR``: the report a run's config asks for, and the report as text.

``cfg`` is the config a run with the same flags would use, and the files are judged with the pool that run
would build (``batchcap.run.preparer_for``): what check counts is what that run records, requests and sends.
``batchcap.cli.check`` registers the command and prints; this module raises from the one error tree
(``UsageError`` for flags that do not fit together, ``ConfigError``/``JournalError`` for a folder or journal
that cannot be read) and ``cli`` turns those into exit codes 2 and 3.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchcap.aio import run_async
from batchcap.check.estimate import CostEstimate, Estimate, cost_estimate, estimate
from batchcap.check.inventory import Inventory, inventory
from batchcap.config import RunConfig, Target
from batchcap.errors import ConfigError, UsageError
from batchcap.flow.budget import TokenPrice
from batchcap.run import preparer_for, run_targets
from batchcap.run.spend import money
from batchcap.service.auth import find_token
from batchcap.source.datasets import open_source
from batchcap.words import plural

if TYPE_CHECKING:
    from batchcap.run.plan import Planner

__all__ = ["MAX_PROBE", "CheckReport", "render", "run_check"]

MAX_PROBE = 100  #: a probe is a sample, not a run: its images are held in memory


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``check`` found; ``data`` is the ``--json`` object (keys are a contract, see issue 12)."""

    inventory: Inventory
    estimate: Estimate | None
    probe: dict[str, Any] | None
    data: dict[str, Any]
    out: Path | None = None  #: the journal counted as done, if any
    estimates: tuple[Estimate, ...] = ()  #: one per target (several with several --target; ``estimate`` is the first)
    folder: Path | None = None  #: the input when it is a local folder of images (None: a dataset, a URL)


def run_check(
    cfg: RunConfig, *, has_target: bool, probe: int = 0, targets: tuple[Target, ...] | None = None
) -> CheckReport:
    """Take stock of ``cfg``'s folder as ``run`` would see it, probe the target if asked, estimate if there is a
    target. ``cfg`` is the config a run with the same flags would use; ``targets`` its ``run_targets(cfg)``, when
    the caller has them already. Raises from the error tree."""
    if probe and not has_target:
        raise UsageError("--probe needs a target (--model, --endpoint, --space, --target SPEC or --config): the "
                         "probe measures that target")
    if probe > MAX_PROBE:
        raise UsageError(f"--probe {probe}: at most {MAX_PROBE} requests (a probe is a sample)")
    if targets is None:
        targets = run_targets(cfg) if has_target else ()  # a run's lanes, resolved as run resolves them
    lanes = targets or ((Target("target", cfg.target.label, cfg, _price(cfg)),) if has_target else ())
    if probe and len(lanes) > 1:
        raise UsageError("--probe measures one target: give one --target (or --model / --endpoint)")
    out = cfg.out if cfg.out.exists() else None  # a run with these flags resumes it
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; pass the JSONL results file")
    source = cfg.source
    token, _ = find_token(cfg.target.token_file)
    images = open_source(source.input_dir, image_column=source.image_column, follow_symlinks=source.follow_symlinks,
                         token=token.reveal() if token is not None else None)
    pool = preparer_for(cfg if has_target else replace(cfg, routing=replace(cfg.routing, targets=())), targets)
    planner, stale = _journal_view(cfg, out, targets, images.context_names()) if has_target else (None, None)
    inv = inventory(
        images, out=out, dedupe=source.dedupe, max_image_mb=source.max_image_mb,
        follow_symlinks=source.follow_symlinks, pool=pool, readers=source.readers, probe=probe,
        retry_failed=cfg.retry_failed, max_side=cfg.prepare.max_side, planner=planner,
    )
    probed: dict[str, Any] | None = None
    latency, throttled, tokens = None, False, None
    if probe:
        probed, latency, throttled, tokens = _probe(lanes[0], inv, cfg.budget.token_price,
                                                    by_tokens=lanes[0].price_per_hour is None)
    estimates = tuple(
        estimate(inv.to_caption, target=lane.cfg.target.label, concurrency=lane.cfg.limits.ceiling,
                 rate=lane.cfg.request_rate, burst=lane.cfg.limits.burst, latency_s=latency, throttled=throttled,
                 price_per_hour=lane.price_per_hour, tokens=tokens if lane is lanes[0] else None)
        for lane in lanes
    )
    est = estimates[0] if estimates else None
    data = inv.to_dict()
    data["estimate"] = None if est is None else est.to_dict()
    if len(estimates) > 1:
        data["estimates"] = {lane.name: e.to_dict() for lane, e in zip(lanes, estimates, strict=True)}
    data["probe"] = probed
    data["stale"] = stale
    return CheckReport(inv, est, probed, data, out, estimates=estimates, folder=images.root)


def _journal_view(cfg: RunConfig, out: Path | None, targets: tuple[Target, ...], extra: Collection[str]
                  ) -> tuple[Planner, dict[str, Any]]:
    """What a run with these flags would make of ``out`` (the journal it would resume), from one load of it: the
    run's own planner (which tasks of each image it asks: several tasks, stale answers, copies in the journal),
    and the answers made with other settings (issue 16), which it asks again or keeps (--keep-stale). The tasks
    are checked as a run checks them (exit 2 if they do not fit). Only with a target: without one, every answer's
    target differs and the count would mean nothing."""
    from batchcap.journal import JournalIndex, load_index
    from batchcap.journal.meta import read_manifest
    from batchcap.run.plan import (
        build_plan,
        legacy_current,
        legacy_parts,
        planner_for,
        spec_history,
        stale_answers,
    )

    plan = build_plan(cfg, [t.cfg for t in targets], extra=extra)
    index = load_index(out, retry_failed=cfg.retry_failed, repair=False) if out is not None else JournalIndex()
    previous = read_manifest(out) if out is not None else None
    found: list[Any] = []
    if out is not None:
        legacy = legacy_parts(previous)
        found = stale_answers(plan, index, spec_history(previous, legacy),
                              legacy_current=legacy_current(plan, legacy))
    action = "kept (--keep-stale)" if cfg.tasks.keep_stale else "a run asks them again"
    stale = {"answers": sum(s.answers for s in found), "by_task": {s.task: s.answers for s in found},
             "changed": {s.task: list(s.changed) for s in found}, "kept": cfg.tasks.keep_stale,
             "notes": [s.note(action) for s in found]}
    return planner_for(cfg, plan, index, previous), stale


def _price(cfg: RunConfig) -> float | None:
    """``--price-per-hour [NAME=]DOLLARS`` of the one target, if given."""
    for text in cfg.routing.price_per_hour:
        value = text.rpartition("=")[2].removeprefix("$")
        try:
            price = float(value)
        except ValueError:
            raise ConfigError(f"--price-per-hour: expected dollars per hour, e.g. 0.60 (got {text!r})") from None
        if not (price >= 0 and math.isfinite(price)):
            raise ConfigError(f"--price-per-hour must be >= 0 dollars (got {text!r}); 0 means free")
        return price
    return None


def _probe(
    lane: Target, inv: Inventory, token_price: TokenPrice | None, *, by_tokens: bool
) -> tuple[dict[str, Any], float | None, bool, CostEstimate | None]:
    from batchcap.check.probe import probe

    if lane.cfg.target.endpoint_name:
        raise UsageError("--probe with --endpoint-name: wake the Endpoint with a run first, or pass its URL")
    token, _ = find_token(lane.token_file or lane.cfg.target.token_file)
    images = list(inv.probe_images)  # prepared as the run prepares them: the probe sends what the run sends
    pixels = {image.job.path: px for image, px in zip(images, inv.probe_pixels, strict=True)}
    inv.probe_images.clear()
    result = run_async(lambda: probe(lane.cfg, images, token=token, quality=lane.cfg.quality,
                                     token_price=token_price, priced_by_tokens=by_tokens))
    paths = list(result.costs)
    tokens = cost_estimate(inv.to_caption, [result.costs[p] for p in paths], pixels=[pixels.get(p) for p in paths],
                           pixels_total=inv.pixels_to_send, pixels_unknown=inv.pixels_unknown)
    return result.to_dict(), result.latency_s, result.throttled > 0, tokens


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def render(
    root: Path | str, out: Path | None, inv: Inventory, estimates: Sequence[Estimate], probed: dict[str, Any] | None,
    stale: list[str] | None = None,
) -> str:
    """The human report (``stale``: the notes of ``data["stale"]``, answers made with other settings)."""
    lines = [
        f"batchcap check {root}: {plural(inv.files, 'image file')} ({_mb(inv.bytes)}), {inv.images} readable, "
        f"{inv.unreadable} unreadable, {plural(inv.duplicates, 'exact copy', 'exact copies')}"
        + (f", {plural(inv.near_duplicates, 'near copy', 'near copies')}" if inv.dedupe == "near" else "")
        + (f", {inv.already_done} already done in {out}" if out is not None else "")
        + f" ({inv.elapsed_s:.1f} s)",
    ]
    if inv.by_format:
        lines.append("  formats:   " + ", ".join(
            f"{m.removeprefix('image/')} {n} ({_mb(inv.bytes_by_format[m])})" for m, n in inv.by_format.most_common()))
    report = inv.to_dict()
    if report["by_long_side"]:
        lines.append("  long side: " + ", ".join(f"{k} px {v}" for k, v in report["by_long_side"].items()))
    if report["by_file_size"]:
        lines.append("  file size: " + ", ".join(f"{k} {v}" for k, v in report["by_file_size"].items()))
    if inv.unreadable:
        lines.append("  unreadable (run records these as errors):")
        lines.extend(f"    {n:>6}  {reason}" for reason, n in inv.unreadable_reasons.most_common(8))
        lines.extend(f"            e.g. {e['path']}: {e['reason']}" for e in inv.unreadable_examples[:3])
    if inv.header_unreadable:
        lines.append(f"  {plural(inv.header_unreadable, 'file')} {'passes' if inv.header_unreadable == 1 else 'pass'}"
                     " the structural check but no reader reads their header "
                     f"(e.g. {inv.header_examples[0]['path']}): with --max-side 0 they are sent as they are, and the "
                     "service may refuse them")
    if inv.duplicate_examples:
        ex = inv.duplicate_examples[0]
        lines.append(f"  copies, e.g. {ex['path']} = {ex['duplicate_of']}")
    if inv.earlier_errors:
        lines.append(f"  {plural(inv.earlier_errors, 'image')} {'keeps' if inv.earlier_errors == 1 else 'keep'} an "
                     f"earlier error in {out} (run skips them; --retry-failed)")
    lines.extend(f"  stale answers: {note}" for note in stale or ())
    per = (f" for {plural(inv.images_to_caption, 'image')} (one per task still to ask)"
           if inv.images_to_caption != inv.to_caption else "")
    lines.append(f"  to caption: {plural(inv.to_caption, 'request')}{per}, {_mb(inv.bytes_to_send)} to send "
                 f"({inv.bytes_to_send_method})")
    if probed is not None:
        lines.append(f"  probe: {plural(probed['requests'], 'request')}, {probed['ok']} ok, mean latency "
                     f"{probed['latency_mean_s']} s, errors {probed['errors'] or 'none'}, "
                     f"quality flags {probed['quality_flags'] or 'none'} (captions not kept)")
        usage = probed["usage"]
        if usage["prompt_tokens"] or usage["completion_tokens"]:
            billed = "" if probed["cost_usd"] is None else f", billed {money(probed['cost_usd'])}"
            lines.append(f"  probe usage: {usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} "
                         f"completion tokens{billed}; prices: {probed['prices'] or 'none known'}")
        lines.extend(f"    note: {n}" for n in probed["notes"])
    for est in estimates:
        rate = "unlimited" if est.rate is None else f"{est.rate:g}/s"
        wall = "unknown" if est.wall_s is None else _duration(est.wall_s)
        cost = "" if est.cost is None else f", ~{money(est.cost)}"
        if est.cost_low is not None and est.cost_high is not None and est.tokens is not None:
            cost += (f" ({money(est.cost_low)} to {money(est.cost_high)}, 95%; {money(1000 * est.tokens.per_image)} "
                     f"per 1,000 images, from {est.tokens.sample} probe answers' usage)")
        lines.append(f"  estimate for {est.target}: {wall} (bound: {est.bound}; rate {rate}, burst {est.burst}, "
                     f"concurrency {est.concurrency}){cost}")
        lines.extend(f"    note: {n}" for n in est.notes)
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
