"""The run manifest beside the journal: settings, version, times, counts, the error breakdown, the stop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from batchcap.config import RunConfig
from batchcap.errors import JournalError
from batchcap.journal import JournalIndex, manifest_path, write_json_atomic
from batchcap.journal.throughput import Invocation, Throughput
from batchcap.run.stats import RunStats
from batchcap.version import __version__

__all__ = ["Manifest", "manifest_path"]


def _earlier_invocations(path: Path) -> list[Invocation]:
    """The runs the manifest being replaced recorded (none when it is missing or unreadable: JSON is input)."""
    try:
        return Invocation.from_manifest(orjson.loads(path.read_bytes()))
    except (OSError, ValueError):
        return []


class Manifest:
    """Written atomically when the run starts (state "running") and again when it ends, however it ends.

    ``invocations`` carries every earlier run on the same journal forward (from the manifest it replaces), so
    ``throughput`` covers all of them without the time between them (``batchcap.journal.throughput``).
    """

    __slots__ = ("doc", "earlier", "out", "path", "started_at")

    def __init__(
        self, cfg: RunConfig, index: JournalIndex, *, started_at: float, source: dict[str, Any] | None = None
    ) -> None:
        self.out = cfg.out
        self.path = manifest_path(cfg.out)
        self.started_at = started_at
        self.earlier = _earlier_invocations(self.path) if index.lines else []
        self.doc: dict[str, Any] = {
            "tool": "batchcap",
            "version": __version__,
            "started_at": started_at,
            "finished_at": None,
            "state": "running",
            "config": cfg.public_dict(),
            "source": source,  #: kind (folder, parquet, webdataset), location, files, image column
            "journal_before": {"ok": index.ok, "error_final": index.error_final,
                               "error_retryable": index.error_retryable, "repaired_bytes": index.repaired_bytes},
            "invocations": [inv.to_json() for inv in [*self.earlier, Invocation(started_at)]],
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
            preparation={"prepared": stats.prepared, "passed_as_is": stats.passed,
                         "original_bytes": stats.original_bytes, "bytes_sent": stats.prepared_bytes_sent,
                         "bytes_saved": stats.original_bytes - stats.prepared_bytes_sent,
                         "below_useful_size": stats.undersized,
                         "smallest_sent": list(stats.smallest_sent) if stats.smallest_sent else None},
            targets={name: {**info, "counts": dict(stats.by_target.get(name, {}))}
                     for name, info in stats.targets.items()} or None,
            elapsed_s=round(stats.elapsed, 3),
        )
        now = Invocation(self.started_at, stats.elapsed, stats.ok + stats.failed)
        invocations = Invocation.fold([*self.earlier, now])
        self.doc["invocations"] = [inv.to_json() for inv in invocations]
        self.doc["throughput"] = Throughput.of(invocations).to_json()
        if "spend" in self.doc or stats.spend.any:
            prices = self.doc.get("spend", {}).get("prices") or stats.spend.prices
            self.doc["spend"] = {**stats.spend.to_dict(), "prices": prices}
        try:
            write_json_atomic(self.path, self.doc)
        except OSError:
            pass
