"""The run manifest beside the journal: settings, version, times, counts, the error breakdown, the stop.

``config`` is this invocation's settings (what ``export`` and ``report`` read). ``settings`` keeps the settings of
every invocation that wrote the journal, by id, never rewritten: the config and, per task, its prompt, schema and
fingerprint parts (``batchcap.run.plan``), so an answer's fingerprint can always be traced to the settings that
made it ("task tags: prompt changed since 120 answers"). Each entry of ``invocations`` names its settings in
order (folded entries name all they cover). A manifest written before ``settings`` existed becomes the entry
``legacy``: the settings the answers without a fingerprint were made with.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from batchcap.config import RunConfig
from batchcap.errors import JournalError
from batchcap.journal import JournalIndex, manifest_path, write_json_atomic
from batchcap.journal.throughput import Invocation, Throughput
from batchcap.run.stats import RunStats
from batchcap.version import __version__

__all__ = ["LEGACY_SETTINGS", "Manifest", "manifest_path", "read_manifest"]

#: The id of the settings of a manifest written before ``settings`` existed.
LEGACY_SETTINGS = "legacy"


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A manifest as it is on disk, or None (absent, unreadable, not an object: the journal is the truth)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def earlier_settings(previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings an earlier manifest kept; one from before they were kept gives its config, as ``legacy``."""
    if previous is None:
        return {}
    kept = previous.get("settings")
    if isinstance(kept, dict):
        return dict(kept)
    if isinstance(previous.get("config"), dict):
        return {LEGACY_SETTINGS: {"legacy": True, "version": previous.get("version"), "config": previous["config"]}}
    return {}


def _settings_id(entry: Mapping[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


class Manifest:
    """Written atomically when the run starts (state "running") and again when it ends, however it ends.

    ``invocations`` carries every earlier run on the same journal forward (from the manifest it replaces), so
    ``throughput`` covers all of them without the time between them (``batchcap.journal.throughput``).
    """

    __slots__ = ("doc", "earlier", "out", "path", "settings_id", "started_at")

    def __init__(self, cfg: RunConfig, index: JournalIndex, *, started_at: float, source: dict[str, Any] | None = None,
                 tasks: Mapping[str, Any] | None = None, previous: Mapping[str, Any] | None = None) -> None:
        self.out = cfg.out
        self.path = manifest_path(cfg.out)
        self.started_at = started_at
        if index.lines and previous is None:
            previous = read_manifest(self.path)
        previous = previous if index.lines else None
        self.earlier = Invocation.from_manifest(previous) if previous is not None else []
        settings = earlier_settings(previous)
        if LEGACY_SETTINGS in settings:  # the runs before settings were kept: that is what they ran with
            self.earlier = [inv if inv.settings else replace(inv, settings=(LEGACY_SETTINGS,)) for inv in self.earlier]
        config = cfg.public_dict()
        entry = {"version": __version__, "config": config, "tasks": dict(tasks or {})}
        self.settings_id = _settings_id(entry)
        settings.setdefault(self.settings_id, entry)
        self.doc: dict[str, Any] = {
            "tool": "batchcap",
            "version": __version__,
            "started_at": started_at,
            "finished_at": None,
            "state": "running",
            "config": config,
            "source": source,  #: kind (folder, parquet, webdataset), location, files, image column
            "tasks": dict(tasks or {}),
            "journal_before": {"ok": index.ok, "error_final": index.error_final,
                               "error_retryable": index.error_retryable, "repaired_bytes": index.repaired_bytes},
            "invocations": [inv.to_json() for inv in [*self.earlier, self._now()]],
            "settings": settings,
        }

    def _now(self, stats: RunStats | None = None) -> Invocation:
        if stats is None:
            return Invocation(self.started_at, settings=(self.settings_id,))
        return Invocation(self.started_at, stats.elapsed, stats.ok + stats.failed, settings=(self.settings_id,))

    def write_start(self) -> None:
        """The first write; a failure here stops the run before anything is sent."""
        try:
            write_json_atomic(self.path, self.doc)
        except OSError as exc:
            raise JournalError(f"cannot write the run manifest beside {self.out}: {exc.strerror or exc}") from None

    def write_end(self, stats: RunStats) -> None:
        """The last write (best effort: the journal, not the manifest, is the record of what was done)."""
        reason = stats.aborted
        self.doc.update(
            finished_at=time.time(),
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
            elapsed_s=round(stats.elapsed, 3),
        )
        invocations = Invocation.fold([*self.earlier, self._now(stats)])
        self.doc["invocations"] = [inv.to_json() for inv in invocations]
        self.doc["throughput"] = Throughput.of(invocations).to_json()
        if "spend" in self.doc or stats.spend.any:
            prices = self.doc.get("spend", {}).get("prices") or stats.spend.prices
            self.doc["spend"] = {**stats.spend.to_dict(), "prices": prices}
        try:
            write_json_atomic(self.path, self.doc)
        except OSError:
            pass
