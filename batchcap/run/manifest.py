"""The run manifest beside the journal: settings, version, times, counts, the error breakdown, the stop.

``config`` is this invocation's settings (what ``export`` and ``report`` read); ``invocations`` keeps every
invocation's, in order, with each task's prompt and fingerprint specs (``batchcap.run.plan``), so an answer's
fingerprint can always be traced to the settings that made it: an earlier invocation's entry is never
rewritten. A manifest written before invocations existed becomes the first one, marked ``legacy``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from batchcap.config import RunConfig
from batchcap.errors import JournalError
from batchcap.journal import JournalIndex, manifest_path, write_json_atomic
from batchcap.run.stats import RunStats
from batchcap.version import __version__

__all__ = ["Manifest", "manifest_path", "read_manifest"]


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A manifest as it is on disk, or None (absent, unreadable, not an object: the journal is the truth)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _earlier(previous: Mapping[str, Any] | None) -> list[Any]:
    """The invocations an earlier manifest kept (one written before invocations existed: itself, as legacy)."""
    if previous is None:
        return []
    kept = previous.get("invocations")
    if isinstance(kept, list):
        return list(kept)
    if isinstance(previous.get("config"), dict):
        return [{"legacy": True, "version": previous.get("version"), "started_at": previous.get("started_at"),
                 "finished_at": previous.get("finished_at"), "state": previous.get("state"),
                 "config": previous["config"], "counts": previous.get("counts")}]
    return []


class Manifest:
    """Written atomically when the run starts (state "running") and again when it ends, however it ends."""

    __slots__ = ("doc", "invocation", "out", "path")

    def __init__(self, cfg: RunConfig, index: JournalIndex, *, started_at: float,
                 tasks: Mapping[str, Any] | None = None, previous: Mapping[str, Any] | None = None) -> None:
        self.out = cfg.out
        self.path = manifest_path(cfg.out)
        config = cfg.public_dict()
        self.invocation: dict[str, Any] = {"version": __version__, "started_at": started_at, "finished_at": None,
                                           "state": "running", "config": config, "tasks": dict(tasks or {})}
        self.doc: dict[str, Any] = {
            "tool": "batchcap",
            "version": __version__,
            "started_at": started_at,
            "finished_at": None,
            "state": "running",
            "config": config,
            "tasks": dict(tasks or {}),
            "journal_before": {"ok": index.ok, "error_final": index.error_final,
                               "error_retryable": index.error_retryable, "repaired_bytes": index.repaired_bytes},
            "invocations": [*_earlier(previous), self.invocation],
        }

    def write_start(self) -> None:
        """The first write; a failure here stops the run before anything is sent."""
        try:
            write_json_atomic(self.path, self.doc)
        except OSError as exc:
            raise JournalError(f"cannot write the run manifest beside {self.out}: {exc.strerror or exc}") from None

    def write_end(self, stats: RunStats) -> None:
        """The last write (best effort: the journal, not the manifest, is the record of what was done)."""
        reason = stats.aborted
        state = "aborted" if reason else "interrupted" if stats.interrupted else "finished"
        self.invocation.update(finished_at=time.time(), state=state,
                               counts={"ok": stats.ok, "failed": stats.failed, "by_task": {
                                   k: dict(v) for k, v in stats.by_task.items()}})
        self.doc.update(
            finished_at=time.time(),
            state=state,
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
                         "bytes_saved": stats.original_bytes - stats.prepared_bytes_sent},
            targets={name: {**info, "counts": dict(stats.by_target.get(name, {}))}
                     for name, info in stats.targets.items()} or None,
            elapsed_s=round(stats.elapsed, 3),
        )
        try:
            write_json_atomic(self.path, self.doc)
        except OSError:
            pass
