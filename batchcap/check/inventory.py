"""The pre-flight pass over a folder: what is there, what is broken, what is a copy, what is left to do.

Nothing is sent. Every file takes the path it takes in ``run``, in the same order: the scan
(``Source.batches``: a folder, parquet, WebDataset tars, fsspec URLs), the read and structural check (``read.load``), copies (by content, as run's
``Deduper`` decides: a copy shares its original's fate, error included), then the run's own preparation
(``PreparePool.triage``: the header decides, in microseconds, whether a file goes as it is, needs pixel work,
or is refused: a bomb over ``--max-pixels``, a format nothing reads). So ``unreadable``, ``duplicates`` and
``to_caption`` are what ``run`` records and requests; ``bytes_to_send`` is measured with the same pool
(``upload.SentBytes``). Memory is flat: a batch of files at a time, the counters, and 16-32 bytes per distinct
content (``DigestSet``).

Reading, hashing and triage run in ``readers`` worker threads (``os.read`` and hashlib release the GIL); the
counting is done by the calling thread, in scan order, so the result does not depend on thread timing.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from batchcap.check.header import header_size
from batchcap.check.upload import SentBytes
from batchcap.errors import InputError
from batchcap.journal import JournalIndex, load_index
from batchcap.models import ImageJob, LoadedImage
from batchcap.prepare import PreparePool, PrepareSettings
from batchcap.source.datasets import Source, open_source
from batchcap.source.digest import DigestSet, NearIndex, NearKey, content_digest, near_key
from batchcap.source.read import load_batch

if TYPE_CHECKING:
    from batchcap.run.plan import Planner

__all__ = ["LONG_SIDE_BUCKETS", "SIZE_BUCKETS", "FileFacts", "Inventory", "header_size", "inspect", "inventory"]

Dedupe = Literal["off", "exact", "near"]

#: (upper bound in px of the long side, label); the last is open.
LONG_SIDE_BUCKETS: tuple[tuple[int, str], ...] = (
    (256, "<=256"), (512, "257-512"), (1024, "513-1024"), (2048, "1025-2048"), (4096, "2049-4096"),
)
#: (upper bound in bytes, label); the last is open.
SIZE_BUCKETS: tuple[tuple[int, str], ...] = (
    (100 * 1024, "<100KB"), (1024 * 1024, "100KB-1MB"), (5 * 1024 * 1024, "1-5MB"), (20 * 1024 * 1024, "5-20MB"),
)
_MAX_REASONS = 50  #: distinct unreadable reasons kept (messages with sizes in them vary per file)
_MAX_EXAMPLES = 10
_MAX_REFUSED = 100_000  #: refused contents remembered, so their copies are counted as run records them


def _bucket(value: int, buckets: tuple[tuple[int, str], ...], last: str) -> str:
    for bound, label in buckets:
        if value <= bound:
            return label
    return last


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the pass learnt of one file. ``error``: why ``run`` cannot read it; ``refused``: why its preparation
    refuses it from the header (run records either as an InputError)."""

    path: str
    size: int
    mime: str | None = None
    dims: tuple[int, int] | None = None
    digest: bytes | None = None
    error: str | None = None
    header_error: str | None = None
    near: NearKey | None = None
    refused: str | None = None


def inspect(item: LoadedImage | tuple[ImageJob, InputError], *, near: bool = False,
            triaged: LoadedImage | InputError | None = None) -> FileFacts:
    """Judge one loaded file (pure): hash, format, dimensions from the header, the preparation's verdict."""
    if not isinstance(item, LoadedImage):
        job, err = item
        return FileFacts(job.path, job.size, error=str(err))
    data = item.data
    dims, header_error = header_size(data, item.mime)
    return FileFacts(
        item.job.path, item.job.size, item.mime, dims, content_digest(data), None, header_error,
        near_key(data) if near and header_error is None else None,
        str(triaged) if isinstance(triaged, InputError) else None,
    )


@dataclass(slots=True)
class Inventory:
    """The counts ``batchcap check`` reports; ``to_dict`` is its ``--json`` (keys are a contract)."""

    files: int = 0  #: image files found
    images: int = 0  #: files - unreadable: what run sends, or records as a copy, or skips as done
    unreadable: int = 0  #: files run records with an InputError (copies of such a file included, as run does)
    duplicates: int = 0  #: files whose content an earlier one has (run's records with "duplicate_of")
    near_duplicates: int = 0  #: with --dedupe near: not exact copies, but near an earlier image
    already_done: int = 0  #: files with an ok record in --out
    earlier_errors: int = 0  #: files whose final error in --out run skips (unless --retry-failed)
    to_caption: int = 0  #: requests a run would send: readable, not done, first of its content; one per open task
    images_to_caption: int = 0  #: the images those requests are for (several tasks: fewer than to_caption)
    bytes: int = 0  #: on disk, every image file
    bytes_to_send: int = 0  #: of the to_caption images, after preparation (see bytes_to_send_method)
    bytes_to_send_method: str = ""
    header_unreadable: int = 0  #: with --max-side 0 (sent unchecked): files whose header no reader can read
    scan_problems: int = 0
    dedupe: str = "exact"
    elapsed_s: float = 0.0
    by_format: Counter[str] = field(default_factory=Counter)
    bytes_by_format: Counter[str] = field(default_factory=Counter)
    by_long_side: Counter[str] = field(default_factory=Counter)
    by_file_size: Counter[str] = field(default_factory=Counter)
    unreadable_reasons: Counter[str] = field(default_factory=Counter)
    unreadable_examples: list[dict[str, str]] = field(default_factory=list)
    duplicate_examples: list[dict[str, str]] = field(default_factory=list)
    header_examples: list[dict[str, str]] = field(default_factory=list)
    #: A uniform sample of the to_caption images, for --probe (reservoir: spread over the whole folder) ...
    probe_images: list[LoadedImage] = field(default_factory=list)
    probe_pixels: list[int | None] = field(default_factory=list)  #: ... and their pixels as sent (see below)
    #: Pixels the to_caption images would be sent with (long side scaled to --max-side, never enlarged): what a
    #: VLM's image tokens grow with, so a probe's cost per image scales to the folder by it.
    pixels_to_send: int = 0
    pixels_unknown: int = 0  #: to_caption images whose header gave no size

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object, without the estimate (the command adds ``estimate``)."""
        return {
            "files": self.files,
            "images": self.images,
            "unreadable": self.unreadable,
            "duplicates": self.duplicates,
            "already_done": self.already_done,
            "bytes": self.bytes,
            "bytes_to_send": self.bytes_to_send,
            "to_caption": self.to_caption,
            "images_to_caption": self.images_to_caption,
            "near_duplicates": self.near_duplicates if self.dedupe == "near" else None,
            "earlier_errors": self.earlier_errors,
            "header_unreadable": self.header_unreadable,
            "scan_problems": self.scan_problems,
            "dedupe": self.dedupe,
            "bytes_to_send_method": self.bytes_to_send_method,
            "by_format": {m: {"files": n, "bytes": self.bytes_by_format[m]} for m, n in self.by_format.most_common()},
            "by_long_side": _ordered(self.by_long_side, [lbl for _, lbl in LONG_SIDE_BUCKETS] + [">4096", "unknown"]),
            "by_file_size": _ordered(self.by_file_size, [lbl for _, lbl in SIZE_BUCKETS] + [">20MB"]),
            "unreadable_reasons": dict(self.unreadable_reasons.most_common()),
            "unreadable_examples": self.unreadable_examples,
            "duplicate_examples": self.duplicate_examples,
            "header_examples": self.header_examples,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _ordered(counts: Counter[str], order: list[str]) -> dict[str, int]:
    return {label: counts[label] for label in order if counts[label]}


class _Tally:
    """Folds FileFacts, in scan order, into an Inventory (the single-threaded half of the pass)."""

    def __init__(
        self, inv: Inventory, *, done: JournalIndex, skip: JournalIndex, dedupe: Dedupe, sent: SentBytes, probe: int,
        max_side: int = 1024, seed: int = 0, planner: Planner | None = None,
    ) -> None:
        self.inv = inv
        self.planner = planner  #: with a target: the run's own planner decides which tasks are open
        self.done = done if len(done) else None
        self.skip = skip if len(skip) else None
        self.dedupe = dedupe
        self.sent = sent
        self.probe = probe
        self.max_side = max_side
        self.rng = random.Random(seed)  # the probe's sample: reproducible for one folder
        self.offered = 0  # images offered to the probe's sample so far
        self.all_seen = DigestSet()
        self.pending_seen = DigestSet() if self.skip is not None else self.all_seen
        self.near_all = NearIndex() if dedupe == "near" else None
        self.near_pending = (NearIndex() if self.skip is not None else self.near_all) if dedupe == "near" else None
        self.first_path: dict[bytes, str] = {}  # only for the few duplicate examples: bounded below
        self.refused: dict[bytes, str] = {}  # content -> why run refuses it (its copies get the same record)

    def add(self, facts: FileFacts, triaged: LoadedImage | None) -> None:
        inv = self.inv
        inv.files += 1
        inv.bytes += facts.size
        inv.by_file_size[_bucket(facts.size, SIZE_BUCKETS, ">20MB")] += 1
        if self.planner is None and self.done is not None and facts.path in self.done:
            inv.already_done += 1
        if facts.error is not None:
            self.unreadable(facts.path, facts.error)
            return
        assert facts.digest is not None
        copy = self.dedupe != "off" and not self.all_seen.add(facts.digest)
        if copy:
            self.copy(facts)
            if facts.digest in self.refused:  # run gives a copy its original's record: this error
                self.unreadable(facts.path, self.refused[facts.digest])
                return
        elif facts.refused is not None:
            self.refuse(facts, facts.refused)
            return
        near_copy = self.near(facts, copy)
        asks = self.pending(facts, copy, near_copy, triaged)
        if not asks or triaged is None:
            self.count_image(facts)
            return
        got = self.sent.add(triaged)
        if isinstance(got, InputError):  # measured, and its pixels cannot be prepared: run records it
            self.refuse(facts, str(got))
            return
        self.count_image(facts)
        inv.to_caption += asks  # each open task is a request with the image's bytes
        inv.images_to_caption += 1
        inv.bytes_to_send += got * asks
        pixels = sent_pixels(facts.dims, self.max_side)
        if pixels is None:
            inv.pixels_unknown += 1
        else:
            inv.pixels_to_send += pixels * asks
        if self.probe:
            self.sample(triaged, pixels)

    def unreadable(self, path: str, reason: str) -> None:
        inv = self.inv
        inv.unreadable += 1
        reasons = inv.unreadable_reasons
        if reason in reasons or len(reasons) < _MAX_REASONS:
            reasons[reason] += 1
        else:
            reasons["(other reasons)"] += 1
        if len(inv.unreadable_examples) < _MAX_EXAMPLES:
            inv.unreadable_examples.append({"path": path, "reason": reason})

    def refuse(self, facts: FileFacts, reason: str) -> None:
        """An original the preparation refuses: unreadable, and so is every later copy of it."""
        assert facts.digest is not None
        if len(self.refused) < _MAX_REFUSED:
            self.refused[facts.digest] = reason
        self.unreadable(facts.path, reason)

    def copy(self, facts: FileFacts) -> None:
        inv = self.inv
        assert facts.digest is not None
        inv.duplicates += 1
        if len(inv.duplicate_examples) < _MAX_EXAMPLES and facts.digest in self.first_path:
            inv.duplicate_examples.append({"path": facts.path, "duplicate_of": self.first_path[facts.digest]})

    def count_image(self, facts: FileFacts) -> None:
        """A file run sends, records as a copy, or skips as done: by format, size and header."""
        inv = self.inv
        assert facts.digest is not None
        assert facts.mime is not None
        inv.images += 1
        inv.by_format[facts.mime] += 1
        inv.bytes_by_format[facts.mime] += facts.size
        inv.by_long_side[_bucket(max(facts.dims), LONG_SIDE_BUCKETS, ">4096") if facts.dims else "unknown"] += 1
        if facts.header_error is not None:
            inv.header_unreadable += 1
            if len(inv.header_examples) < _MAX_EXAMPLES:
                inv.header_examples.append({"path": facts.path, "reason": facts.header_error})
        if len(self.first_path) < 10_000:
            self.first_path.setdefault(facts.digest, facts.path)

    def near(self, facts: FileFacts, copy: bool) -> bool:
        """With --dedupe near: whether ``facts`` is near an earlier image (counted once, over the whole folder)."""
        if copy or self.near_all is None or facts.near is None:
            return False
        near_copy = self.near_all.original(facts.near, facts.path) is not None
        if near_copy:
            self.inv.near_duplicates += 1
        return near_copy

    def pending(self, facts: FileFacts, copy: bool, near_copy: bool, triaged: LoadedImage | None) -> int:
        """How many requests run would send for ``facts`` now (0: none): its open tasks, if it is the first of its
        content among what is left. With a target, the run's planner judges each task against the journal."""
        assert facts.digest is not None
        asks = 1
        if self.planner is not None and triaged is not None:
            asked, records = self.planner.plan_image(triaged.with_digest(facts.digest.hex()))
            if asked is None:
                self.inv.already_done += not records  # every task current (a copy found in the journal is not)
                return 0
            asks = len(asked.asks)
        elif self.skip is not None and facts.path in self.skip:
            return 0
        if self.pending_seen is not self.all_seen:
            if self.dedupe != "off" and not self.pending_seen.add(facts.digest):
                return 0
        elif copy:
            return 0
        if self.near_pending is not None and facts.near is not None:
            if self.near_pending is self.near_all:
                return 0 if near_copy else asks
            return asks if self.near_pending.original(facts.near, facts.path) is None else 0
        return asks


    def sample(self, triaged: LoadedImage, pixels: int | None) -> None:
        """Reservoir sampling (Algorithm R): after k images each is in the probe with probability N/k. An image is
        prepared (as the run prepares it: the probe sends what the run sends) only when it enters the sample."""
        inv = self.inv
        self.offered += 1
        slot = len(inv.probe_images) if len(inv.probe_images) < self.probe else self.rng.randrange(self.offered)
        if slot >= self.probe:
            return
        try:
            ready = self.sent.pool.finish_now(triaged)
        except InputError:
            return  # run records it; it is not a request
        if slot == len(inv.probe_images):
            inv.probe_images.append(ready)
            inv.probe_pixels.append(pixels)
        else:
            inv.probe_images[slot], inv.probe_pixels[slot] = ready, pixels


def sent_pixels(dims: tuple[int, int] | None, max_side: int) -> int | None:
    """Pixels of an image of ``dims`` once prepared: the long side scaled down to ``max_side`` (0: as it is)."""
    if dims is None or min(dims) < 1:
        return None
    w, h = dims
    scale = min(1.0, max_side / max(w, h)) if max_side else 1.0
    return max(1, round(w * scale) * round(h * scale))


def _work(
    jobs: list[ImageJob], max_bytes: int, near: bool, pool: PreparePool
) -> list[tuple[FileFacts, LoadedImage | None]]:
    """In a worker thread: read, judge, hash and triage one batch (the header decides: 2-20 us a file)."""
    out: list[tuple[FileFacts, LoadedImage | None]] = []
    for item in load_batch(jobs, max_bytes=max_bytes):
        triaged = pool.triage(item) if isinstance(item, LoadedImage) else None
        out.append((inspect(item, near=near, triaged=triaged), triaged if isinstance(triaged, LoadedImage) else None))
    return out


def inventory(
    root: Path | str | Source,
    *,
    out: Path | None = None,
    dedupe: Dedupe = "exact",
    max_image_mb: float = 20.0,
    follow_symlinks: bool = False,
    pool: PreparePool | None = None,
    readers: int = 2,
    batch_size: int = 64,
    probe: int = 0,
    retry_failed: bool = False,
    max_side: int = 1024,
    planner: Planner | None = None,
    clock: Any = time.monotonic,
) -> Inventory:
    """Take stock of ``root`` (and of ``out``, the journal a run would resume). Sends nothing.

    ``root`` is a source (``batchcap.source.datasets``), or an input to open as one: a folder, a dataset, a URL.
    ``pool`` is the run's preparation (``batchcap.run.preparer_for``; default: run's defaults, raw bytes).
    ``probe`` keeps N of the images a run would send, as sent, sampled uniformly over the input (bounded: N
    images in memory), for a probe. ``planner`` (``batchcap.run.plan.planner_for``, with a target): the tasks
    each image still needs asked, judged as the run judges them (stale answers, copies in the journal).
    Raises ``ConfigError`` for a missing folder, ``JournalError`` for a journal that cannot be read.
    """
    started = clock()
    source = open_source(root, follow_symlinks=follow_symlinks) if isinstance(root, Path | str) else root
    pool = pool or PreparePool(PrepareSettings())
    sent = SentBytes(pool)
    done = skip = JournalIndex()
    if planner is not None:  # the journal as the run reads it, loaded once by the caller
        done = skip = planner.index
    elif out is not None:
        done = load_index(out, retry_failed=True, repair=False)  # ok records only
        skip = done if (retry_failed or not done.error_final) else load_index(out, repair=False)
    inv = Inventory(dedupe=dedupe)
    inv.earlier_errors = 0 if retry_failed else done.error_final
    tally = _Tally(inv, done=done, skip=skip, dedupe=dedupe, sent=sent, probe=probe, max_side=max_side,
                   planner=planner)

    def scan_error(path: str, exc: OSError) -> None:
        inv.scan_problems += 1

    max_bytes = int(max_image_mb * 1024 * 1024)
    batches: Iterator[list[ImageJob]] = source.batches(batch_size=batch_size, on_error=scan_error,
                                                       max_bytes=max_bytes)
    near = dedupe == "near"
    with ThreadPoolExecutor(max_workers=max(1, readers), thread_name_prefix="batchcap-check") as workers:
        pending: deque[Future[list[tuple[FileFacts, LoadedImage | None]]]] = deque()
        for jobs in batches:
            pending.append(workers.submit(_work, jobs, max_bytes, near, pool))
            if len(pending) >= 2 * max(1, readers):
                for facts, triaged in pending.popleft().result():
                    tally.add(facts, triaged)
        while pending:
            for facts, triaged in pending.popleft().result():
                tally.add(facts, triaged)
    inv.bytes_to_send_method = sent.describe()
    inv.elapsed_s = clock() - started
    return inv
