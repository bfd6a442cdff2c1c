"""``batchcap check DIR``: take stock, probe if asked, estimate for the target a run would use.

The folder, the journal, the target, the limits and the preparation come in one ``RunConfig``, built from the
same flags and profile a run takes (``batchcap.cli.options.config_from_args``), and the files are judged with
the pool the run would build (``batchcap.run.preparer_for``): what check counts is what that run records,
requests and sends. ``batchcap.cli.check`` parses the flags and prints; this module raises from the one error
tree (``UsageError`` for flags that do not fit together, ``ConfigError``/``JournalError`` for a folder or
journal that cannot be read), and ``cli`` turns those into exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchcap.aio import run_async
from batchcap.check.estimate import Estimate, estimate
from batchcap.check.inventory import Inventory, inventory
from batchcap.config import RunConfig, find_token
from batchcap.errors import ConfigError, UsageError
from batchcap.run import lane_targets, preparer_for
from batchcap.service.targets import Target

__all__ = ["MAX_PROBE", "CheckOptions", "CheckReport", "has_target", "render", "take_stock"]

MAX_PROBE = 100  #: a probe is a sample, not a run: its images are held in memory


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What ``check`` adds to a run's settings: the probe, the reader threads."""

    probe: int | None = None
    readers: int = 2


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``check`` found; ``data`` is the ``--json`` object (keys are a contract, see issue 12)."""

    inventory: Inventory
    estimate: Estimate | None
    probe: dict[str, Any] | None
    data: dict[str, Any]
    estimates: tuple[Estimate, ...] = ()  #: one per target with several --target (``estimate`` is the first)


def has_target(cfg: RunConfig) -> bool:
    """Whether ``cfg`` names a service to estimate for (check runs without one)."""
    return bool(cfg.model or cfg.endpoint or cfg.targets or cfg.endpoint_name or cfg.api == "openai")


def _lanes(cfg: RunConfig) -> tuple[Target, ...]:
    """The targets a run with ``cfg`` would caption with, each with its limits and price (as run resolves them)."""
    if cfg.targets:
        return lane_targets(cfg)
    price = None
    if cfg.price_per_hour:
        value = cfg.price_per_hour[-1]
        _, sep, dollars = value.partition("=")
        try:
            price = float((dollars if sep else value).removeprefix("$"))
        except ValueError:
            raise UsageError(f"--price-per-hour: expected dollars per hour, e.g. 0.60 (got {value!r})") from None
        if not price >= 0:
            raise UsageError(f"--price-per-hour must be >= 0 dollars (got {value!r})")
    return (Target("target", cfg.target, cfg, price),)


def take_stock(cfg: RunConfig, options: CheckOptions) -> CheckReport:
    """Take stock of the folder, probe if asked, estimate if there is a target. Raises from the error tree."""
    target = has_target(cfg)
    if options.probe is not None and not target:
        raise UsageError("--probe needs a target (--model, --endpoint, --api openai, --target or --config): "
                         "the probe measures that target")
    if options.probe is not None and options.probe > MAX_PROBE:
        raise UsageError(f"--probe {options.probe}: at most {MAX_PROBE} requests (a probe is a sample)")
    if not cfg.input_dir.is_dir():
        raise ConfigError(f"{cfg.input_dir} does not exist or is not a folder")
    if cfg.out.is_dir():
        raise ConfigError(f"--out {cfg.out} is a folder; pass the JSONL results file")
    lanes = _lanes(cfg) if target else ()
    if options.probe and len(lanes) > 1:
        raise UsageError("--probe measures one target: give one --target (or --model / --endpoint)")
    inv = inventory(
        cfg.input_dir, out=cfg.out if cfg.out.exists() else None, dedupe=cfg.dedupe, max_image_mb=cfg.max_image_mb,
        follow_symlinks=cfg.follow_symlinks, pool=preparer_for(cfg if target else replace(cfg, targets=())),
        readers=options.readers, probe=options.probe or 0, retry_failed=cfg.retry_failed,
    )
    probed: dict[str, Any] | None = None
    latency, throttled = None, False
    if options.probe:
        probed, latency, throttled = _probe(lanes[0], inv)
    estimates = tuple(
        estimate(inv.to_caption, target=lane.cfg.target, concurrency=lane.cfg.concurrency,
                 rate=lane.cfg.request_rate, burst=lane.cfg.burst, latency_s=latency, throttled=throttled,
                 price_per_hour=lane.price_per_hour)
        for lane in lanes
    )
    est = estimates[0] if estimates else None
    data = inv.to_dict()
    data["estimate"] = None if est is None else est.to_dict()
    if len(estimates) > 1:
        data["estimates"] = {lane.name: e.to_dict() for lane, e in zip(lanes, estimates, strict=True)}
    data["probe"] = probed
    return CheckReport(inv, est, probed, data, estimates)


def _probe(lane: Target, inv: Inventory) -> tuple[dict[str, Any], float | None, bool]:
    from batchcap.check.probe import probe

    if lane.cfg.endpoint_name:
        raise UsageError("--probe with --endpoint-name: wake the Endpoint with a run first, or pass its --endpoint URL")
    token, _ = find_token(lane.token_file or lane.cfg.token_file)
    images = list(inv.probe_images)
    inv.probe_images.clear()
    result = run_async(lambda: probe(lane.cfg, images, token=token, quality=lane.cfg.quality()))
    return result.to_dict(), result.latency_s, result.throttled > 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def render(
    root: Path, out: Path | None, inv: Inventory, estimates: Sequence[Estimate], probed: dict[str, Any] | None
) -> str:
    """The human report."""
    lines = [
        f"batchcap check {root}: {inv.files} image files ({_mb(inv.bytes)}), {inv.images} readable, "
        f"{inv.unreadable} unreadable, {inv.duplicates} exact copies"
        + (f", {inv.near_duplicates} near copies" if inv.dedupe == "near" else "")
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
        lines.append(f"  {inv.header_unreadable} files pass the structural check but no reader reads their header "
                     f"(e.g. {inv.header_examples[0]['path']}): with --max-side 0 they are sent as they are, and the "
                     "service may refuse them")
    if inv.duplicate_examples:
        ex = inv.duplicate_examples[0]
        lines.append(f"  copies, e.g. {ex['path']} = {ex['duplicate_of']}")
    if inv.earlier_errors:
        lines.append(f"  {inv.earlier_errors} images keep an earlier error in {out} (run skips them; --retry-failed)")
    lines.append(f"  to caption: {inv.to_caption} requests, {_mb(inv.bytes_to_send)} to send "
                 f"({inv.bytes_to_send_method})")
    if probed is not None:
        lines.append(f"  probe: {probed['requests']} requests, {probed['ok']} ok, mean latency "
                     f"{probed['latency_mean_s']} s, errors {probed['errors'] or 'none'}, "
                     f"quality flags {probed['quality_flags'] or 'none'} (captions not kept)")
    for est in estimates:
        rate = "unlimited" if est.rate is None else f"{est.rate:g}/s"
        wall = "unknown" if est.wall_s is None else _duration(est.wall_s)
        cost = "" if est.cost is None else f", ~${est.cost:.2f}"
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
