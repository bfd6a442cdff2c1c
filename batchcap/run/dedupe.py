"""Copies captioned once: the first image with a content is sent, every later copy gets its record.

    reader thread:  admit_batch(images) -> per image: send it (an original) | a copy's record now | wait
    sender:         after the original's record, resolved(record) -> the records of the copies that waited

A copy's record is the original's answer under the copy's path, with ``duplicate_of`` naming the original,
``attempts: 0`` and ``bytes_sent: 0``: an ``ok`` with the same caption (and flags), or the same error (so a
retryable one is retried on resume, by both). A run stopped before the original's answer leaves its copies
without a record, so the next run does them.

Only sizes seen before are hashed. Two files can only be byte-identical if they are the same size, and in a
photo folder almost every size is unique, so hashing every file (24 us for 48 KB: -21% img/s against a canned
server, ``benchmarks/bench_dedupe_cost.py``) is wasted work. The first file of each size is sent unhashed; when
a second file of that size comes, both are hashed (the first is read again from disk, once). ``--dedupe
near`` decodes every image anyway, so it hashes every image; so does a source whose images cannot be read again
by path (a dataset: ``root`` None).

Bounded: ``max_entries`` originals are remembered, each with its path and, once back, its record (measured:
260 bytes per original, 514 with its record for a 45-character path and a 100-character caption; 500,000 by
default, so ~250 MB at most, reached only past half a million distinct images); past that, new contents are
sent without being remembered (``overflow``), and their later copies are sent too. On resume, a copy whose
original was done by an earlier run is sent once more (the journal keeps no digests): one request, never a
wrong caption.

Thread safety: ``admit_batch`` runs in the reader threads, ``resolved`` on the event loop; one lock guards
the tables and is never held while hashing or reading.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from batchcap.models import ImageJob, LoadedImage, Record
from batchcap.source.digest import NearIndex, NearKey, content_digest, near_key
from batchcap.source.settings import Dedupe

__all__ = ["Admitted", "Deduper"]

#: One image's fate: ``(image, True, None)`` send it; ``(image, False, record)`` a copy, recorded now;
#: ``(image, False, None)`` a copy waiting for its original (``resolved`` gives its record).
Admitted = tuple[LoadedImage, bool, Record | None]
#: The digest of an original whose file could not be read again: equal to no real digest.
_UNREADABLE = b""


class _Original:
    """One sent image, its answer once known, and the copies waiting for it."""

    __slots__ = ("digest", "path", "record", "waiting")

    def __init__(self, path: str, digest: bytes | None) -> None:
        self.path = path
        self.digest = digest
        self.record: Record | None = None
        self.waiting: list[ImageJob] = []


class Deduper:
    """Which images to send; the records of their copies."""

    __slots__ = ("_by_digest", "_by_path", "_by_size", "_in_flight", "_lock", "_near", "count", "max_entries",
                 "mode", "overflow", "root")

    def __init__(
        self, mode: Dedupe = "exact", *, root: Path | str | None = ".", max_entries: int = 500_000
    ) -> None:
        self.mode = mode
        self.root = os.fspath(root) if root is not None else None  #: None: hash every image as it comes
        self.max_entries = max_entries
        self.count = 0  #: originals remembered
        self.overflow = 0  #: contents sent after the tables were full: their later copies are sent too
        self._lock = threading.Lock()
        self._by_size: dict[int, _Original] = {}  # the first original of each size (exact mode)
        self._by_digest: dict[bytes, _Original] = {}
        self._in_flight: dict[str, _Original] = {}  # original path -> entry, until its record comes back
        self._near = NearIndex(max_entries=max_entries) if mode == "near" else None
        self._by_path: dict[str, _Original] = {}  # near only: NearIndex answers with paths

    def admit_batch(self, images: Sequence[LoadedImage]) -> list[Admitted]:
        """In a reader thread: decide each image of a batch (see ``Admitted``), in order."""
        if self.mode == "near":
            keyed = [(im, content_digest(im.data), near_key(im.data)) for im in images]
            with self._lock:
                return [self._admit_near(im, digest, key) for im, digest, key in keyed]
        with self._lock:  # which sizes were seen before: only those are hashed
            if self.root is None:  # nothing to read again later: every image is hashed now
                need = list(images)
                firsts = {self._by_size[len(im.data)] for im in need if len(im.data) in self._by_size}
            else:
                need = [im for im in images if len(im.data) in self._by_size]
                firsts = {self._by_size[len(im.data)] for im in need}
        digests = {id(im): content_digest(im.data) for im in need}
        first_digests = {e: self._digest_of(e, {}) for e in firsts if e.digest is None}
        batch = {im.job.path: im for im in images}
        with self._lock:
            for entry, digest in first_digests.items():
                self._set_digest(entry, digest)
            return [self._admit_exact(im, digests.get(id(im)), batch) for im in images]

    def resolved(self, record: Record) -> list[Record]:
        """On the event loop: the original ``record`` came back; the records of the copies that waited."""
        with self._lock:
            entry = self._in_flight.pop(record.path, None)
            if entry is None:
                return []
            entry.record = record
            waiting, entry.waiting = entry.waiting, []
        return [_copy(record, entry.path, job) for job in waiting]

    # -- under the lock ------------------------------------------------------------------------------------

    def _admit_exact(self, image: LoadedImage, digest: bytes | None, batch: dict[str, LoadedImage]) -> Admitted:
        size = len(image.data)
        first = self._by_size.get(size)
        if first is None:  # the first file of this size: sent unhashed (hashed when nothing can be read again)
            self._new(image, digest, size)
            return image, True, None
        if digest is None:  # its size came earlier in this batch, or from another reader meanwhile (rare)
            digest = content_digest(image.data)
        if first.digest is None:
            self._set_digest(first, self._digest_of(first, batch))
        entry = self._by_digest.get(digest)
        if entry is None:
            self._new(image, digest, size)
            return image, True, None
        return self._copy_of(entry, image)

    def _admit_near(self, image: LoadedImage, digest: bytes, key: NearKey | None) -> Admitted:
        entry = self._by_digest.get(digest)
        if entry is None and self._near is not None and key is not None:
            first = self._near.original(key, image.job.path)
            if first is not None:
                entry = self._by_path.get(first)
        if entry is None:
            new = self._new(image, digest, None)
            if new is not None:
                self._by_path[new.path] = new
            return image, True, None
        return self._copy_of(entry, image)

    def _new(self, image: LoadedImage, digest: bytes | None, size: int | None) -> _Original | None:
        """Remember ``image`` as an original (None when the tables are full: it is sent all the same)."""
        if self.count >= self.max_entries:
            self.overflow += 1
            return None
        entry = _Original(image.job.path, digest)
        self.count += 1
        if size is not None:
            self._by_size.setdefault(size, entry)
        if digest is not None:
            self._by_digest[digest] = entry
        self._in_flight[entry.path] = entry
        return entry

    def _set_digest(self, entry: _Original, digest: bytes | None) -> None:
        if entry.digest is None:
            entry.digest = digest if digest is not None else _UNREADABLE
            if digest is not None:
                self._by_digest.setdefault(digest, entry)

    def _copy_of(self, entry: _Original, image: LoadedImage) -> Admitted:
        if entry.record is None:
            entry.waiting.append(image.job)
            return image, False, None
        return image, False, _copy(entry.record, entry.path, image.job)

    # -- outside the lock ----------------------------------------------------------------------------------

    def _digest_of(self, entry: _Original, batch: dict[str, LoadedImage]) -> bytes | None:
        """The digest of an original that was sent unhashed: from this batch, else its file read again."""
        image = batch.get(entry.path)
        if image is not None:
            return content_digest(image.data)
        if self.root is None:
            return None
        try:
            with open(os.path.join(self.root, entry.path), "rb") as f:
                return content_digest(f.read())
        except OSError:  # gone since: it matches nothing
            return None

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"<Deduper {self.mode} originals={self.count}/{self.max_entries} hashed={len(self._by_digest)} "
                f"in_flight={len(self._in_flight)} overflow={self.overflow}>")


def _copy(original: Record, original_path: str, job: ImageJob) -> Record:
    return Record(
        job.path, original.status, caption=original.caption, error=original.error, attempts=0,
        latency_s=None, bytes_sent=0, target=original.target, request_id=original.request_id, ts=time.time(),
        flags=original.flags, duplicate_of=original_path,
    )
