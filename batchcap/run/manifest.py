"""The run manifest beside the journal: what every run into this journal was asked, and what the journal holds.

One journal is written by many invocations (a first run, resumes, ``--retry-failed``, a changed prompt), so the
manifest keeps each invocation's settings and outcome in ``invocations``, in order, and never rewrites an
earlier one. Each entry is a superset of ``journal.throughput.Invocation`` (``started_at``, ``elapsed_s``,
``images``), so ``throughput`` (images per second of busy time) is computed over all of them. The top-level keys
are what readers use (``export``, ``report``, ``merge``, the site):

    config          the settings of the latest invocation (paths absolute); source: what it read (kind, columns)
    input_dir       the captioned folder, absolute; journal: the JSONL, absolute
    state           the latest invocation's end: running, finished, interrupted, aborted (+ abort_reason/kind)
    counts          the journal as a whole: images, ok, errors (final / retryable), records; plus the attempts,
                    retries, throttling and copies of every invocation, summed
    errors_by_type  paths without a caption, by the error of their last record (the journal as a whole)
    preparation     bytes before and after preparation, summed over invocations
    throughput      images recorded per second of busy time, over every invocation (``journal.throughput``)
    spend           what the latest invocation spent and the prices it used (``run.spend``; each entry keeps its own)
    tasks           the latest invocation's tasks: prompt, generation settings, schema, and per target the
                    settings part of the fingerprint (``spec``) and its component hashes (``parts``; issue 16)
    specs           per task, every spec any invocation used -> its parts, never folded away: an answer's
                    fingerprint traces to what made it ("task tags: prompt changed since 120 answers")
    started_at      the first invocation's start; finished_at, the latest's end; elapsed_s, all of them summed

Each invocation keeps its ``tasks`` too (an invocation without them ran before issue 16: the answers without a
fingerprint were made with its config). A manifest written before version 2 (one run's view) becomes the first
entry of ``invocations``, as it was. Past
``MAX_INVOCATIONS`` entries the oldest are folded into the first (their times, images and counts summed, the first
one's settings kept), so the manifest stays small however often a journal is resumed.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchcap.config import RunConfig
from batchcap.errors import JournalError
from batchcap.journal import JournalIndex, load_index, manifest_path, write_json_atomic
from batchcap.journal.meta import MANIFEST_VERSION, read_manifest
from batchcap.journal.throughput import MAX_INVOCATIONS, Invocation, Throughput
from batchcap.run.stats import RunStats
from batchcap.source.location import is_url
from batchcap.version import __version__

__all__ = ["Manifest", "journal_counts", "manifest_path", "task_specs"]

#: Keys of a settings dict that hold a path: made absolute, so a reader in another folder finds them.
_PATH_KEYS = frozenset({"input_dir", "out", "token_file"})
#: Per-invocation counts summed into the top level (the journal-wide ones come from the journal itself).
_SUMMED = ("attempts", "retries", "throttled", "duplicates", "quality_retries")


def _absolute(settings: Any) -> Any:
    """``settings`` with every path-valued key made absolute (nested dicts included), without resolving links;
    a URL input (``hf://``, ``https://``: a dataset) is left as it is."""
    if not isinstance(settings, dict):
        return settings
    return {k: (_absolute_path(v) if k in _PATH_KEYS and isinstance(v, str) and v else _absolute(v))
            for k, v in settings.items()}


def _absolute_path(value: str) -> str:
    return value if is_url(value) else os.path.abspath(value)


def journal_counts(index: JournalIndex) -> dict[str, int]:
    """What the journal holds, per distinct image path (the last record of each, an ok winning over errors)."""
    errors = index.error_final + index.error_retryable
    return {"images": index.ok + errors, "ok": index.ok, "errors": errors, "error_final": index.error_final,
            "error_retryable": index.error_retryable, "records": index.lines}


def _earlier(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The invocations an existing manifest records. One from before settings were kept per invocation is its
    last run (kept as it was, marked ``manifest_version: 1``), after the earlier runs it timed, if any."""
    if doc is None:
        return []
    found = doc.get("invocations")
    if isinstance(found, list) and all(isinstance(inv, dict) and "config" in inv for inv in found):
        return list(found)
    timed = [inv for inv in found if isinstance(inv, dict)] if isinstance(found, list) else []
    legacy = {k: v for k, v in doc.items() if k not in ("tool", "invocations", "throughput")}
    counts = legacy.get("counts")
    if isinstance(counts, dict) and isinstance(counts.get("ok"), int) and isinstance(counts.get("failed"), int):
        legacy.setdefault("images", counts["ok"] + counts["failed"])
    if not legacy:
        return []
    runs = [{**inv, "manifest_version": 1} for inv in timed[:-1]]
    return [*runs, {**(timed[-1] if timed else {}), **legacy, "manifest_version": 1}]


def task_specs(doc: Mapping[str, Any] | None, *invocations: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task, spec -> parts: the manifest's ``specs`` and those of its invocations, then of ``invocations``."""
    out: dict[str, dict[str, Any]] = {}
    kept = doc.get("specs") if isinstance(doc, Mapping) else None
    for name, specs in kept.items() if isinstance(kept, Mapping) else ():
        if isinstance(specs, Mapping):
            out.setdefault(name, {}).update({k: v for k, v in specs.items() if isinstance(v, Mapping)})
    found = doc.get("invocations") if isinstance(doc, Mapping) else None
    for inv in [*(found if isinstance(found, list) else ()), *invocations]:
        tasks = inv.get("tasks") if isinstance(inv, Mapping) else None
        for name, info in tasks.items() if isinstance(tasks, Mapping) else ():
            for lane in info.get("targets", ()) if isinstance(info, Mapping) else ():
                if isinstance(lane, Mapping) and isinstance(lane.get("spec"), str) \
                        and isinstance(lane.get("parts"), Mapping):
                    out.setdefault(name, {})[lane["spec"]] = dict(lane["parts"])
    return out


def _sum_dicts(dicts: list[Any]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for d in dicts:
        if isinstance(d, dict):
            total.update({k: v for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    return dict(total)


def _fold(invocations: list[dict[str, Any]], keep: int = MAX_INVOCATIONS) -> list[dict[str, Any]]:
    """At most ``keep`` entries: the oldest become one, its settings the first's, its times and counts summed."""
    if len(invocations) <= keep:
        return invocations
    cut = len(invocations) - keep + 1
    old, rest = invocations[:cut], invocations[cut:]
    times = Invocation.fold([Invocation.from_json(inv) or Invocation(0.0) for inv in old], keep=1)[0]
    first = {**old[0], **times.to_json(), "folded": times.folded, "finished_at": old[-1].get("finished_at"),
             "counts": _sum_dicts([inv.get("counts") for inv in old])}
    return [first, *rest]


class Manifest:
    """Written atomically when a run starts (this invocation "running") and again when it ends, however it ends."""

    __slots__ = ("carry", "earlier", "entry", "input_dir", "out", "path", "specs", "spend", "totals")

    def __init__(
        self, cfg: RunConfig, index: JournalIndex, *, started_at: float, source: dict[str, Any] | None = None,
        tasks: Mapping[str, Any] | None = None,
    ) -> None:
        self.out = Path(os.path.abspath(cfg.out))
        self.input_dir = _absolute_path(str(cfg.input_dir))
        self.path = manifest_path(self.out)
        self.carry = index.lines > 0  # an empty journal: an old manifest beside it speaks of records now gone
        self.earlier: list[dict[str, Any]] = []
        self.specs: dict[str, dict[str, Any]] = {}  #: per task, every spec used on this journal -> its parts
        #: what the run spends (issue 18: ``run.spend``), its prices first: set by the pipeline, kept at the end
        self.spend: dict[str, Any] | None = None
        self.totals: dict[str, Any] = {"counts": journal_counts(index), "errors_by_type": dict(index.errors_by_type)}
        self.entry: dict[str, Any] = {
            "version": __version__,
            "started_at": started_at,
            "finished_at": None,
            "elapsed_s": None,
            "images": None,
            "state": "running",
            "config": _absolute(cfg.public_dict()),
            "source": source,  #: kind (folder, parquet, webdataset), location, files, image column
            "tasks": dict(tasks or {}),  #: per task: prompt, generation, schema, per target its spec and parts
            "journal_before": {"ok": index.ok, "error_final": index.error_final,
                               "error_retryable": index.error_retryable, "repaired_bytes": index.repaired_bytes},
        }

    @property
    def doc(self) -> dict[str, Any]:
        """The whole manifest: the top-level view, then every invocation in order (this one last)."""
        invocations = _fold([*self.earlier, self.entry])
        first, last = invocations[0], self.entry
        summed = _sum_dicts([inv.get("counts") for inv in invocations])
        counts = {**self.totals["counts"], **{k: int(summed.get(k, 0)) for k in _SUMMED}}
        times = [inv for raw in invocations if (inv := Invocation.from_json(raw)) is not None]
        return {
            "tool": "batchcap",
            "manifest_version": MANIFEST_VERSION,
            "version": __version__,
            "journal": str(self.out),
            "input_dir": self.input_dir,
            "state": last["state"],
            "abort_reason": last.get("abort_reason"),
            "abort_kind": last.get("abort_kind"),
            "started_at": first.get("started_at", last["started_at"]),
            "finished_at": last["finished_at"],
            "elapsed_s": round(sum(float(inv.get("elapsed_s") or 0) for inv in invocations), 3),
            "config": last["config"],
            "source": last.get("source"),
            "counts": counts,
            "errors_by_type": self.totals["errors_by_type"],
            "preparation": _sum_dicts([inv.get("preparation") for inv in invocations]),
            "flags": _sum_dicts([inv.get("flags") for inv in invocations]),
            "boilerplate": last.get("boilerplate", []),
            "targets": last.get("targets"),
            "tasks": last.get("tasks", {}),
            "specs": self.specs,
            "throughput": Throughput.of(times).to_json(),
            **({"spend": self.spend} if self.spend is not None else {}),
            "invocations": invocations,
        }

    def write_start(self) -> None:
        """The first write (earlier invocations read back first); a failure stops the run before anything is sent."""
        previous = read_manifest(self.out) if self.carry else None
        self.earlier = _earlier(previous)
        self.specs = task_specs(previous, self.entry)
        try:
            write_json_atomic(self.path, self.doc)
        except OSError as exc:
            raise JournalError(f"cannot write the run manifest beside {self.out}: {exc.strerror or exc}") from None

    def write_end(self, stats: RunStats) -> None:
        """The last write (best effort: the journal, not the manifest, is the record of what was done)."""
        reason = stats.aborted
        self.entry.update(
            finished_at=time.time(),
            elapsed_s=stats.elapsed,  # unrounded: the summary's images/s is computed from the same number
            images=stats.ok + stats.failed,
            state="aborted" if reason else "interrupted" if stats.interrupted else "finished",
            abort_reason=reason,
            abort_kind=stats.abort_kind,
            counts={"found": stats.found, "ok": stats.ok, "failed": stats.failed, "skipped": stats.skipped,
                    "attempts": stats.attempts, "retries": stats.retries, "throttled": stats.throttled,
                    "duplicates": stats.duplicates, "quality_retries": stats.quality_retries},
            flags=dict(stats.flags),
            boilerplate=[{"caption": b.caption, "images": b.count, "share": round(b.share, 4),
                          "examples": list(b.examples)} for b in stats.boilerplate.top()],
            errors_by_type=dict(stats.errors_by_type),
            by_task={k: dict(v) for k, v in stats.by_task.items()},
            stale={"asked_again": dict(stats.stale), "kept": dict(stats.kept_stale), "copied": stats.copied},
            preparation={"prepared": stats.prepared, "passed_as_is": stats.passed,
                         "original_bytes": stats.original_bytes, "bytes_sent": stats.prepared_bytes_sent,
                         "bytes_saved": stats.original_bytes - stats.prepared_bytes_sent,
                         "below_useful_size": stats.undersized,
                         "smallest_sent": list(stats.smallest_sent) if stats.smallest_sent else None},
            targets={name: {**info, "counts": dict(stats.by_target.get(name, {}))}
                     for name, info in stats.targets.items()} or None,
            sidecars=stats.sidecars.as_dict() if stats.sidecars is not None else None,
        )
        if self.spend is not None or stats.spend.any:
            prices = (self.spend or {}).get("prices") or stats.spend.prices
            self.spend = self.entry["spend"] = {**stats.spend.to_dict(), "prices": prices}
        try:
            index = load_index(self.out, repair=False)  # the journal as a whole, this invocation's lines included
            self.totals = {"counts": journal_counts(index), "errors_by_type": dict(index.errors_by_type)}
        except JournalError:
            pass  # the counts at the start stay; the journal says the rest
        try:
            write_json_atomic(self.path, self.doc)
        except OSError:
            pass
