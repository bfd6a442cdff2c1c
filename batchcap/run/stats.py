"""What a run did, counted by the writer (and the senders for attempts); ``repr`` is the one-line summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from batchcap.journal.throughput import images_per_s
from batchcap.run.sidecar import SidecarReport
from batchcap.run.spend import SpendTally
from batchcap.tasks.quality import BoilerplateCounter

__all__ = ["RunStats"]


@dataclass(slots=True)
class RunStats:
    """What a run did; ``repr`` is the one-line summary."""

    found: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    elapsed: float = 0.0
    earlier_errors: int = 0
    interrupted: bool = False
    slept: float = 0.0  #: seconds the machine slept during the run (``flow.suspend``)
    aborted: str | None = None  #: the message of the run-level stop, if one stopped the run
    abort_kind: str | None = None  #: its cause as a value (``batchcap.run.guard.StopKind``)
    scan_problem_files: int = 0  #: files the scan could not name or read (each has an error record)
    scan_problem_folders: int = 0  #: folders the scan could not name or read (each has an error record)
    sidecars: SidecarReport | None = None  #: with --sidecar: written, kept, clashes (``run.sidecar``)
    errors_by_type: Counter[str] = field(default_factory=Counter)
    #: the first few error records of this run, ``(path, type, message)``, for the summary to name
    failed_examples: list[tuple[str, str, str]] = field(default_factory=list)
    by_target: dict[str, Counter[str]] = field(default_factory=dict)  #: ok/error counts per target (several only)
    by_task: dict[str, Counter[str]] = field(default_factory=dict)  #: ok/error records per task
    stale: Counter[str] = field(default_factory=Counter)  #: per task: answers made otherwise, asked again
    kept_stale: Counter[str] = field(default_factory=Counter)  #: per task: answers made otherwise, kept
    copied: int = 0  #: answers copied from an earlier run's answer to the same content (no request)
    drained: dict[str, str] = field(default_factory=dict)  #: targets given up on during the run, and why
    targets: dict[str, dict[str, object]] = field(default_factory=dict)  #: per target: drained, busy_s, cost
    latencies_sum: float = 0.0
    prepared: int = 0  #: ok images that were re-encoded (resized, turned, converted or stripped)
    passed: int = 0  #: ok images sent byte for byte by the preparation stage
    original_bytes: int = 0  #: file bytes of the ok images that went through preparation
    prepared_bytes_sent: int = 0  #: request bytes of those same images (``bytes_sent`` counts every attempt)
    #: ok images that a limit (--max-upload-mb, --max-side) sent smaller than a model can use, and the smallest
    undersized: int = 0
    smallest_sent: tuple[int, int] | None = None
    duplicates: int = 0  #: copies recorded with their original's caption (``duplicate_of``), not sent
    quality_retries: int = 0  #: attempts spent again on a caption that failed a quality gate
    flags: Counter[str] = field(default_factory=Counter)  #: quality flags of the records written
    flagged: int = 0  #: ok records written with at least one quality flag (the run then exits 1)
    boilerplate: BoilerplateCounter = field(default_factory=BoilerplateCounter)  #: captions of sent images
    spend: SpendTally = field(default_factory=SpendTally)  #: what the written records cost (issue 18)

    def __repr__(self) -> str:
        return (
            f"RunStats(ok={self.ok}, failed={self.failed}, skipped={self.skipped}, retried={self.retries}, "
            f"elapsed={self.elapsed:.1f})"
        )

    @property
    def sidecar_errors(self) -> int:
        """Sidecars that could not be written (permissions, disk)."""
        return self.sidecars.failed if self.sidecars is not None else 0

    @property
    def scan_problems(self) -> int:
        return self.scan_problem_files + self.scan_problem_folders

    @property
    def rate(self) -> float:
        """Images recorded per busy second of this run (``batchcap.journal.throughput``: the one definition)."""
        return images_per_s(self.ok + self.failed, self.elapsed)
