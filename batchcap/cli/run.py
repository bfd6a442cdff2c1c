"""``batchcap run``: caption a folder, print the summary, pick the exit code."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from batchcap.aio import run_async
from batchcap.cli.exit_codes import EXIT_CODES_HELP, EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK
from batchcap.config import RunConfig
from batchcap.errors import Aborted, ConfigError, NotifyFailed, RunAborted, UsageError
from batchcap.journal.fsio import ensure_writable_file
from batchcap.journal.throughput import images_per_s
from batchcap.prepare import DCT_SLACK, USEFUL_SIDE
from batchcap.progress import LogProgress, NullProgress, Progress, TqdmProgress
from batchcap.redact import shown
from batchcap.run import RunStats, manifest_path, open_input, run, run_targets, tune_malloc
from batchcap.run.sidecar import SidecarReport
from batchcap.run.spend import money
from batchcap.service.auth import Secret, find_token
from batchcap.service.notify import RunState, notify, payload, topic_of
from batchcap.source.datasets import UNDERSTOOD, Source
from batchcap.source.scan import first_image, no_images_message
from batchcap.version import __version__
from batchcap.words import plural

from .argtypes import add_event_loop_flag, number
from .options import add_run_options, config_from_args, ineffective_flags

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Caption every image of INPUT (a folder, searched recursively, or a parquet / WebDataset "
                     "dataset, local or at an fsspec URL) into a JSONL file that is also the resume checkpoint: run "
                     "the same command again after any interruption and it continues.")
    p.epilog = EXIT_CODES_HELP
    p.add_argument("input_dir", metavar="INPUT", help=f"what to caption: {UNDERSTOOD}")
    add_run_options(p)
    add_event_loop_flag(p)
    d = p.add_argument_group("distributed (Ray; pip install 'batchcap[ray]')")
    d.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run the shards as Ray tasks on the cluster at ADDRESS, or with no ADDRESS at $RAY_ADDRESS, "
                        "else on a private local cluster ('local': always that); every node must see INPUT "
                        "and --out")
    d.add_argument("--workers", type=number(int, 1), help="shards captioned at once with --ray (default: 2)")


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = config_from_args(ns, input_dir=ns.input_dir)
    if ns.workers is not None and ns.ray is None:
        raise UsageError("--workers needs --ray (the number of Ray workers)")
    token, source = find_token(cfg.target.token_file)
    if token is not None and cfg.target.space is not None and cfg.target.token_file is None:
        from batchcap.service.space import is_space_host

        if not is_space_host(cfg.target.url):
            source += " (not sent: not a *.hf.space host; --token-file sends it)"
    targets = run_targets(cfg)  # every --target checked before the first line is printed
    for line in ineffective_flags(ns, cfg, targets):
        print(f"batchcap: warning: {line}", file=sys.stderr)
    images = open_input(cfg, token)  # INPUT checked (exit 2 with what batchcap reads) before anything is sent
    prepare_out(cfg.out)  # created only once the rest of the command line holds
    if (empty := _no_images(cfg, images)) is not None:
        print(f"batchcap: {empty}", file=sys.stderr)
        return EXIT_ERRORS
    from batchcap.run.assemble import plan_for

    plan_for(cfg, targets)  # tasks, templates, schemas checked: exit 2 before the first line is printed
    if ns.ray is not None:
        return _main_ray(ns, cfg, token, argv)
    err = sys.stderr
    if not cfg.quiet:
        if targets:
            via = f"{plural(len(targets), 'target')} ({cfg.routing.route}: {', '.join(t.name for t in targets)})"
            print(f"batchcap {__version__}: {cfg.input_dir} -> {cfg.out} via {via}", file=err)
        else:
            rate = "unlimited" if cfg.request_rate is None else f"{cfg.request_rate:g}/s"
            print(f"batchcap {__version__}: {cfg.input_dir} -> {cfg.out} via {cfg.target.label} "
                  f"(token: {source}; concurrency {cfg.limits.concurrency}, rate {rate})", file=err)
    progress = _progress(cfg)
    scan_done = getattr(progress, "scan_finished", None)
    tune_malloc()
    started = time.monotonic()
    try:
        if cfg.target.endpoint_name:
            from batchcap.run import run_with_endpoint

            stats = run_async(
                lambda: run_with_endpoint(cfg, token=token, progress=progress, notes=_note, handle_signals=True,
                                          on_scan_done=scan_done),
                ns.event_loop,
            )
        else:
            stats = run_async(
                lambda: run(cfg, token=token, progress=progress, handle_signals=True, on_scan_done=scan_done,
                            targets=targets, source=images, notes=_note),
                ns.event_loop,
            )
    except RunAborted as exc:
        if exc.kind == "budget":  # the line says what to do; the manifest says what was spent where
            exc.advice = f"results so far are in {cfg.out}; spend by target and provider in {manifest_path(cfg.out)}"
        else:
            exc.advice = f"results so far are in {cfg.out}; fix the cause and run the same command to resume"
        _notify(cfg, "aborted", None, time.monotonic() - started, reason=str(exc))
        raise
    except Aborted as exc:
        _notify(cfg, "aborted", None, time.monotonic() - started, reason=str(exc))
        raise
    _summary(stats, cfg.out)
    if stats.undersized:
        print(f"batchcap: {_undersized(stats, cfg)}", file=err)
    if stats.interrupted:
        print(f"batchcap: interrupted; resume with: batchcap {shlex.join(argv)}", file=err)
        _notify(cfg, "interrupted", stats, stats.elapsed)
        return EXIT_INTERRUPTED
    if stats.failed or stats.earlier_errors or stats.flagged:
        if stats.earlier_errors and not stats.failed:
            their = "its" if stats.earlier_errors == 1 else "their"
            print(f"batchcap: {plural(stats.earlier_errors, 'image')} kept {their} earlier error record; "
                  "add --retry-failed to try them again", file=err)
        if stats.flagged:
            print(f"batchcap: {plural(stats.flagged, 'caption')} failed a quality gate and were kept with \"flags\" (exit 1 so a "
                  "script notices); --on-bad-caption error records them as errors that --retry-failed tries again",
                  file=err)
        _notify(cfg, "errors", stats, stats.elapsed)
        return EXIT_ERRORS
    _notify(cfg, "done", stats, stats.elapsed)
    return EXIT_OK


def _progress(cfg: RunConfig) -> Progress:
    """A bar on a terminal; one plain line every --progress-every seconds in a log file; nothing with -q."""
    if cfg.quiet:
        return NullProgress()
    if sys.stderr.isatty():
        return TqdmProgress()
    return LogProgress(write=lambda line: print(line, file=sys.stderr, flush=True), every=cfg.progress_every)


def _notify(cfg: RunConfig, state: RunState, stats: RunStats | None, elapsed: float, *,
            reason: str | None = None) -> None:
    """``--notify``: one POST; a failure is one warning line, never the run's exit code."""
    if cfg.notify is None:
        return
    body = payload(state=state, ok=stats.ok if stats else 0, errors=stats.failed if stats else 0,
                   skipped=stats.skipped if stats else 0, out=str(cfg.out.resolve()), elapsed=elapsed,
                   reason=reason, topic=topic_of(cfg.notify))
    try:
        notify(cfg.notify, body)
    except NotifyFailed as exc:
        print(f"batchcap: warning: {exc}; the run's own result stands", file=sys.stderr)


def _no_images(cfg: RunConfig, source: Source) -> str | None:
    """Issue 21: a folder without a single image is said so (exit 1), before a journal is made or a token sent.
    Folders the scan cannot read are left to the run, which records each one. (A dataset is not surveyed twice:
    an empty one finds nothing, and says so in its summary.)"""
    if source.root is None:
        return None
    image, passed = first_image(source.root, follow_symlinks=cfg.source.follow_symlinks)
    if image is not None or passed.unreadable:
        return None
    return no_images_message(source.root, passed)


def _undersized(stats: RunStats, cfg: RunConfig) -> str:
    """Issue 21: once, with the count, when a limit sent images smaller than a model can use."""
    w, h = stats.smallest_sent or (0, 0)
    max_side = cfg.prepare.max_side
    limits = [f"--max-side {max_side}"] if max_side < USEFUL_SIDE else []
    if not limits or max(w, h) < max_side * (1 - DCT_SLACK):  # smaller than --max-side alone makes it
        limits.append(f"--max-upload-mb {cfg.prepare.max_upload_mb:g}")
    return (f"warning: {plural(stats.undersized, 'image')} went smaller than {USEFUL_SIDE} px on the long side "
            f"(down to {w}x{h}) to fit {' and '.join(limits)}; models use {USEFUL_SIDE}-1024 px, so their "
            f"captions may be poor: raise {' / '.join(limit.split()[0] for limit in limits)}")


def prepare_out(out: Path) -> None:
    """``--out``'s folder is created and proved writable (a read-only place is exit 2, before anything is sent);
    an ``--out`` that is a folder is exit 2 too."""
    if out.is_dir():
        raise ConfigError(f"--out {shown(out)} is a folder; pass the JSONL results file, e.g. {out / 'captions.jsonl'}")
    ensure_writable_file(out, flag="--out")


def _note(text: str) -> None:
    """An Endpoint lifecycle line (waking, running, paused): few, and each worth a line of its own."""
    print(f"batchcap: {text}", file=sys.stderr)


def _main_ray(ns: argparse.Namespace, cfg: RunConfig, token: Secret | None, argv: Sequence[str]) -> int:
    """``--ray``: the shards as Ray tasks, one merge at the end, one summary."""
    from batchcap.distributed import JobAborted, run_distributed

    if cfg.source.shard is not None:
        raise UsageError("--ray makes its own shards; drop --shard")
    if cfg.target.endpoint_name:
        raise ConfigError("--ray with --endpoint-name is not supported yet; wake the Endpoint with a plain run "
                          "(or pass its --endpoint URL)")
    if cfg.routing.targets:
        raise ConfigError("--ray with --target is not supported yet: give one target (--model, --endpoint, ...)")
    if cfg.budget.capped:  # each shard is its own run: one cap cannot be held across them yet
        raise ConfigError("--ray with --max-cost / --max-images is not supported yet: the shards would each spend up "
                          "to the cap; run without --ray to cap the job")
    workers = ns.workers or 2
    err = sys.stderr
    if not cfg.quiet:
        rate = "unlimited" if cfg.request_rate is None else f"{cfg.request_rate:g}/s"
        print(f"batchcap {__version__}: {cfg.input_dir} -> {cfg.out} via {cfg.target.label} on Ray "
              f"({plural(workers, 'worker')}; concurrency {cfg.limits.concurrency}, rate {rate} for the whole job)", file=err)
    progress = _progress(cfg)
    try:
        job = run_distributed(cfg, workers=workers, address=ns.ray, token=token, progress=progress)
    except JobAborted as exc:
        exc.advice = f"results so far are in {cfg.out}; fix the cause and run the same command to resume"
        _notify(cfg, "aborted", None, 0.0, reason=str(exc))
        raise
    c = job.counts
    rate_s = images_per_s(c["ok"] + c["failed"], job.elapsed)  # the one definition: busy time of the job
    breakdown = ", ".join(f"{k} {v}" for k, v in job.errors_by_type.most_common())
    print(f"batchcap: {c['ok']} ok, {plural(c['failed'], 'error')}, {c['skipped']} already done, in "
          f"{job.elapsed:.1f} s ({rate_s:.1f} img/s; {plural(job.shards_done, 'shard')} on "
          f"{plural(workers, 'worker')}, Ray start-up {job.startup:.1f} s, stop and merge {job.shutdown:.1f} s; "
          f"{plural(c['retries'], 'retry')}, "
          f"{c['throttled']} rate-limited)" + (f"; errors: {breakdown}" if breakdown else ""), file=err)
    if job.merge is not None:
        m = job.merge
        print(f"batchcap: results in {cfg.out}: {plural(m.images, 'image')} ({m.ok} ok, "
              f"{plural(m.errors, 'error')}; shard journals in {cfg.out.name}.parts/)", file=err)
    done = RunStats(ok=c["ok"], failed=c["failed"], skipped=c["skipped"], elapsed=job.elapsed)
    if job.interrupted:
        print(f"batchcap: interrupted; resume with: batchcap {shlex.join(argv)}", file=err)
        _notify(cfg, "interrupted", done, job.elapsed)
        return EXIT_INTERRUPTED
    if job.merge is not None and job.merge.errors:
        _notify(cfg, "errors", done, job.elapsed)
        return EXIT_ERRORS
    _notify(cfg, "done", done, job.elapsed)
    return EXIT_OK


def _summary(stats: RunStats, out: Path) -> None:
    err = sys.stderr
    breakdown = ", ".join(f"{k} {v}" for k, v in stats.errors_by_type.most_common())
    print(
        f"batchcap: {stats.ok} ok, {plural(stats.failed, 'error')}, {stats.skipped} already done, in "
        f"{stats.elapsed:.1f} s ({stats.rate:.1f} img/s; {plural(stats.retries, 'retry')}, "
        f"{stats.throttled} rate-limited)"
        + (f"; errors: {breakdown}" if breakdown else ""),
        file=err,
    )
    if len(stats.by_task) > 1 or any(task != "caption" for task in stats.by_task):
        for task, answers in stats.by_task.items():
            print(f"batchcap:   task {task}: {answers.get('ok', 0)} ok, {plural(answers.get('error', 0), 'error')}",
                  file=err)
    if stats.stale or stats.kept_stale:
        asked = ", ".join(f"{task} {n}" for task, n in stats.stale.items())
        kept = ", ".join(f"{task} {n}" for task, n in stats.kept_stale.items())
        print("batchcap: answers made with other settings: "
              + "; ".join(x for x in (f"asked again: {asked}" if asked else "",
                                      f"kept (--keep-stale): {kept}" if kept else "") if x), file=err)
    _failed_files(stats, out)
    if stats.slept:
        print(f"batchcap: the machine slept {stats.slept:.0f} s during the run; requests in flight then were sent "
              "again, free", file=err)
    if stats.duplicates:
        their = "its" if stats.duplicates == 1 else "their"
        earlier = f" ({stats.copied} from earlier runs)" if stats.copied else ""
        print(f"batchcap: {plural(stats.duplicates, 'copy')} got {their} original's caption without a request"
              f"{earlier} (\"duplicate_of\" in the JSONL; --no-dedupe sends every file)", file=err)
    if stats.flags or stats.quality_retries:
        flags = ", ".join(f"{k} {v}" for k, v in stats.flags.most_common()) or "none left"
        print(f"batchcap: caption quality: {plural(stats.quality_retries, 'retry')}; flags: {flags}", file=err)
    for b in stats.boilerplate.top():
        examples = ", ".join(b.examples)
        print(f"batchcap: the same caption for {b.count} distinct images ({100 * b.share:.0f}%): {b.caption[:100]!r}"
              + (f" (e.g. {examples})" if examples else ""), file=err)
    if stats.scan_problems:
        parts = [plural(n, noun) for n, noun in
                 ((stats.scan_problem_files, "file"), (stats.scan_problem_folders, "folder")) if n]
        print(f"batchcap: {' and '.join(parts)} could not be named or read; each has an error record in {out}",
              file=err)
    if stats.prepared or stats.passed:
        print(f"batchcap: uploaded {_bytes(stats.prepared_bytes_sent)} instead of {_bytes(stats.original_bytes)} "
              f"({plural(stats.prepared, 'image')} prepared, {stats.passed} sent as they were)", file=err)
    if stats.sidecars is not None:
        _sidecar_summary(stats.sidecars)
    _spend(stats)
    for target, info in stats.targets.items():
        counts: Counter[str] = stats.by_target.get(target, Counter())
        cost = f", ${info['cost']:.4f} for {info['busy_s']:.0f} s busy" if info.get("cost") is not None else ""
        spent = f"; spent: {info['drained']}" if info.get("drained") else ""
        print(f"batchcap:   {target}: {counts.get('ok', 0)} ok, {plural(counts.get('error', 0), 'error')}{cost}{spent}",
              file=err)
    print(f"batchcap: results in {out} (run manifest {manifest_path(out)})", file=err)


def _failed_files(stats: RunStats, out: Path) -> None:
    """Up to five failed files with their reasons, and where the rest are."""
    err = sys.stderr
    for path, kind, message in stats.failed_examples:
        print(f"batchcap:   failed: {path}: {kind}: {message[:160]}", file=err)
    if stats.failed > len(stats.failed_examples):
        print(f"batchcap:   ... and {stats.failed - len(stats.failed_examples)} more: every failed file is a "
              f"\"status\": \"error\" line of {out} (batchcap report {out} lists them)", file=err)


def _sidecar_summary(report: SidecarReport) -> None:
    """What --sidecar did, when anything was not simply written: kept files and name clashes, by name."""
    err = sys.stderr
    if report.kept:
        examples = ", ".join(report.kept_examples)
        print(f"batchcap: kept {plural(report.kept, 'existing sidecar')} (e.g. {examples}); "
              "--sidecar-mode overwrite replaces them, append/prepend adds the caption", file=err)
    for image, sidecar, owner in report.clash_examples:
        print(f"batchcap: no sidecar for {image}: {sidecar} is {owner}'s (both map to that name); its caption "
              "is in the JSONL", file=err)
    if report.clashes > len(report.clash_examples):
        more = report.clashes - len(report.clash_examples)
        print(f"batchcap: no sidecar for {plural(more, 'more image')} whose sidecar name is another image's; the "
              "captions are in the JSONL", file=err)
    if report.failed:
        print(f"batchcap: {plural(report.failed, 'caption sidecar')} could not be written", file=err)


def _spend(stats: RunStats) -> None:
    """What it cost (issue 18): the run, per 1,000 images, per target and provider, the job so far."""
    spend, err = stats.spend, sys.stderr
    for note in spend.notes[spend.announced:]:  # the ones said at the start are not said twice
        print(f"batchcap: {note}", file=err)
    line = spend.total
    if not line.images and not line.prompt_tokens:
        return
    tokens = f"{line.prompt_tokens:,} prompt + {line.completion_tokens:,} completion tokens"
    if line.images:
        job = f"; the job so far {money(spend.job_usd)}" if spend.earlier_usd else ""
        print(f"batchcap: spent {money(line.usd)} on {line.images:,} images, {money(1000 * line.usd / line.images)} "
              f"per 1,000 images ({tokens}){job}", file=err)
    else:
        print(f"batchcap: {tokens}; no price known, so no cost (pass --token-price IN,OUT)", file=err)
    parts = [*spend.by_target.items(), *((f"provider {p}", v) for p, v in spend.by_provider.items())]
    if len(spend.by_target) > 1 or spend.by_provider:
        print("batchcap:   " + "; ".join(f"{name}: {money(v.usd)} ({v.images:,} images)" for name, v in parts), file=err)


def _bytes(n: int) -> str:
    """Decimal units, as upload limits and uplinks are counted."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return plural(n, "byte")
