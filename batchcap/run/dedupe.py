"""Copies captioned once: the first image with a content is sent, every later copy gets its record.

    reader:  admit(image, digest, near_key) -> send it (an original) | a copy's record now | wait
    sender:  after the original's record, resolved(record) -> the records of the copies that waited

A copy's record is the original's answer under the copy's path, with ``duplicate_of`` naming the original,
``attempts: 0`` and ``bytes_sent: 0``: an ``ok`` with the same caption (and flags), or the same error (so a
retryable one is retried on resume, by both). A run stopped before the original's answer leaves its copies
without a record, so the next run does them.

Bounded: ``max_entries`` distinct contents are remembered, each with its original's record (~300 bytes with
a 100-character caption; 1,000,000 by default, ~300 MB at most, reached only past a million distinct
images); past that, new contents are sent without being remembered. On resume, a copy whose original was
done by an earlier run is sent once more (the journal keeps no digests): one request, never a wrong caption.
"""

from __future__ import annotations

import time

from batchcap.config import Dedupe
from batchcap.dedupe import NearIndex, NearKey
from batchcap.models import ImageJob, LoadedImage, Record

__all__ = ["Deduper"]


class _Original:
    """One sent image, its answer once known, and the copies waiting for it."""

    __slots__ = ("path", "record", "waiting")

    def __init__(self, path: str) -> None:
        self.path = path
        self.record: Record | None = None
        self.waiting: list[ImageJob] = []


class Deduper:
    """Which images to send; the records of their copies. Used from the event loop only (no lock)."""

    __slots__ = ("_by_digest", "_by_path", "_in_flight", "_near", "max_entries", "mode", "overflow")

    def __init__(self, mode: Dedupe = "exact", *, max_entries: int = 1_000_000) -> None:
        self.mode = mode
        self.max_entries = max_entries
        self.overflow = 0  #: contents sent after the index was full: their later copies are sent too
        self._by_digest: dict[bytes, _Original] = {}
        self._in_flight: dict[str, _Original] = {}  # original path -> entry, until its record comes back
        self._near = NearIndex(max_entries=max_entries) if mode == "near" else None
        self._by_path: dict[str, _Original] = {}  # near only: NearIndex answers with paths

    def admit(self, image: LoadedImage, digest: bytes, near: NearKey | None = None) -> tuple[bool, Record | None]:
        """``(True, None)``: send it. ``(False, record)``: a copy, recorded now. ``(False, None)``: a copy that
        waits for its original's answer (``resolved`` returns its record)."""
        path = image.job.path
        entry = self._by_digest.get(digest)
        if entry is None and self._near is not None and near is not None:
            first = self._near.original(near, path)
            if first is not None:
                entry = self._by_path.get(first)
        if entry is None:
            if len(self._by_digest) < self.max_entries:
                entry = _Original(path)
                self._by_digest[digest] = entry
                self._in_flight[path] = entry
                if self._near is not None:
                    self._by_path[path] = entry
            else:
                self.overflow += 1
            return True, None
        if entry.record is None:
            entry.waiting.append(image.job)
            return False, None
        return False, _copy(entry.record, entry.path, image.job)

    def resolved(self, record: Record) -> list[Record]:
        """The original ``record`` came back: the records of the copies that waited for it."""
        entry = self._in_flight.pop(record.path, None)
        if entry is None:
            return []
        entry.record = record
        waiting, entry.waiting = entry.waiting, []
        return [_copy(record, entry.path, job) for job in waiting]

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return (f"<Deduper {self.mode} contents={len(self._by_digest)}/{self.max_entries} "
                f"in_flight={len(self._in_flight)} overflow={self.overflow}>")


def _copy(original: Record, original_path: str, job: ImageJob) -> Record:
    return Record(
        job.path, original.status, caption=original.caption, error=original.error, attempts=0,
        latency_s=None, bytes_sent=0, target=original.target, request_id=original.request_id, ts=time.time(),
        flags=original.flags, duplicate_of=original_path,
    )
