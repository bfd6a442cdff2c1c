"""Copies answered once: per task, the first image with a content is asked, every later copy gets its record.

    reader thread:  admit_batch(images) -> per image: the asks left to send, the copies' records ready now
    sender:         after an original's record, resolved(record) -> the records of the copies that waited

The unit is a *question*: an image's content and one task's prompt as rendered for it (``batchcap.run.plan``).
Two copies in folders ``cat/`` and ``dog/`` asked "describe this {{ folder }}" are two questions and both are
sent; asked "describe this image" they are one. A copy's record is the original's answer under the copy's path,
with ``duplicate_of`` naming the original, ``attempts: 0`` and ``bytes_sent: 0``: an ``ok`` with the same
caption (data, flags), or the same error (so a retryable one is retried on resume, by both). A run stopped
before the original's answer leaves its copies without a record, so the next run does them. Copies of answers
made by *earlier* runs are found in the journal by the planner, before the image gets here.

Every image carries the digest of its bytes (the readers hash every file: the journal keeps it for later runs).
``--dedupe near`` also decodes each image for a near key: a near copy's questions are keyed by its near
original's content.

Bounded: ``max_entries`` questions are remembered (measured before tasks: ~260 bytes per original, ~514 with
its record; 500,000 by default, so ~250 MB at most, reached only past half a million distinct questions);
past that, new questions are sent without being remembered (``overflow``), and their later copies are sent too.

Thread safety: ``admit_batch`` runs in the reader threads, ``resolved`` on the event loop; one lock guards
the tables and is never held while hashing or decoding.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from batchcap.models import Ask, ImageJob, LoadedImage, Record
from batchcap.source.digest import NearIndex, NearKey, near_key
from batchcap.source.settings import Dedupe

__all__ = ["Admitted", "Deduper"]

#: One image's fate: the image with the asks left to send (None: nothing to send), and copy records ready now.
Admitted = tuple[LoadedImage | None, list[Record]]


class _Original:
    """One question sent, its answer once known, and the copies waiting for it."""

    __slots__ = ("path", "record", "waiting")

    def __init__(self, path: str) -> None:
        self.path = path
        self.record: Record | None = None
        self.waiting: list[tuple[ImageJob, str | None]] = []  # (copy, its own digest)


def _question(content: str, ask: Ask) -> bytes:
    """16 bytes naming (content, task, rendered prompt)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(content.encode("ascii", "replace"))
    h.update(b"\x00" + ask.task.encode("utf-8", "surrogatepass") + b"\x00")
    if ask.prompt is not None:
        h.update(ask.prompt.encode("utf-8", "surrogatepass"))
    return h.digest()


class Deduper:
    """Which questions to send; the records of their copies."""

    __slots__ = ("_by_question", "_in_flight", "_lock", "_near", "_near_digest", "count", "max_entries", "mode",
                 "overflow", "root")

    def __init__(
        self, mode: Dedupe = "exact", *, root: Path | str | None = ".", max_entries: int = 500_000
    ) -> None:
        self.mode = mode
        self.root = os.fspath(root) if root is not None else None  #: None: hash every image as it comes
        self.max_entries = max_entries
        self.count = 0  #: questions remembered
        self.overflow = 0  #: questions sent after the tables were full: their later copies are sent too
        self._lock = threading.Lock()
        self._by_question: dict[bytes, _Original] = {}
        self._in_flight: dict[tuple[str, str], _Original] = {}  # (original path, task) -> entry, until answered
        self._near = NearIndex(max_entries=max_entries) if mode == "near" else None
        self._near_digest: dict[str, str] = {}  # near only: original path -> its digest

    def admit_batch(self, images: Sequence[LoadedImage]) -> list[Admitted]:
        """In a reader thread: decide each image of a batch (see ``Admitted``), in order."""
        keys: list[NearKey | None] = [None] * len(images)
        if self.mode == "near":
            keys = [near_key(im.data) for im in images]
        with self._lock:
            return [self._admit(im, key) for im, key in zip(images, keys, strict=True)]

    def resolved(self, record: Record) -> list[Record]:
        """On the event loop: an original's ``record`` came back; the records of the copies that waited."""
        with self._lock:
            entry = self._in_flight.pop((record.path, record.task), None)
            if entry is None:
                return []
            entry.record = record
            waiting, entry.waiting = entry.waiting, []
        return [_copy(record, entry.path, job, digest) for job, digest in waiting]

    # -- under the lock ------------------------------------------------------------------------------------

    def _content(self, image: LoadedImage, key: NearKey | None) -> str | None:
        """What the image's questions are keyed by: its digest, or its near original's."""
        digest = image.digest
        if self._near is None or key is None:
            return digest
        first = self._near.original(key, image.job.path)
        if first is None:  # a new near original
            if digest is not None and len(self._near_digest) < self.max_entries:
                self._near_digest[image.job.path] = digest
            return digest
        return self._near_digest.get(first, digest)

    def _admit(self, image: LoadedImage, key: NearKey | None) -> Admitted:
        content = self._content(image, key)
        if content is None or not image.asks:
            return image, []
        send: list[Ask] = []
        ready: list[Record] = []
        for ask in image.asks:
            question = _question(content, ask)
            entry = self._by_question.get(question)
            if entry is None:
                if self.count >= self.max_entries:
                    self.overflow += 1
                else:
                    entry = _Original(image.job.path)
                    self._by_question[question] = entry
                    self._in_flight[(entry.path, ask.task)] = entry
                    self.count += 1
                send.append(ask)
            elif entry.record is None:
                entry.waiting.append((image.job, image.digest))
            else:
                ready.append(_copy(entry.record, entry.path, image.job, image.digest))
        if len(send) == len(image.asks):
            return image, ready
        return (replace(image, asks=tuple(send)) if send else None), ready

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"<Deduper {self.mode} questions={self.count}/{self.max_entries} in_flight={len(self._in_flight)} "
                f"overflow={self.overflow}>")


def _copy(original: Record, original_path: str, job: ImageJob, digest: str | None) -> Record:
    return Record(
        job.path, original.status, caption=original.caption, error=original.error, attempts=0,
        latency_s=None, bytes_sent=0, target=original.target, request_id=original.request_id, ts=time.time(),
        flags=original.flags, duplicate_of=original_path, task=original.task, data=original.data,
        fingerprint=original.fingerprint, digest=digest,
    )
