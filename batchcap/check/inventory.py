"""The pre-flight pass over a folder: what is there, what is broken, what is a copy, what is left to do.

Nothing is sent. The input is streamed exactly as ``run`` streams it (``Source.batches``: a folder, parquet,
WebDataset tars, fsspec URLs), each
file is read and judged by ``images.load`` (so unreadable files get the very reasons ``run`` records),
hashed for exact copies, and its header parsed (dimensions only, no pixel decode: ``header_size``) for
the size buckets and the upload estimate. ``--dedupe near`` adds a reduced-size decode
per file (~0.3 ms). Memory is flat: a batch of files at a time, the counters, and 16-32 bytes per distinct
content (``dedupe.DigestSet``).

Reading and hashing run in ``readers`` worker threads (``os.read`` and hashlib release the GIL); the
counting is done by the calling thread, in scan order, so the result does not depend on thread timing.
"""

from __future__ import annotations

import io
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from batchcap.check.upload import PrepareModel, Sampled, UploadModel
from batchcap.errors import InputError
from batchcap.journal import JournalIndex, load_index
from batchcap.models import ImageJob, LoadedImage
from batchcap.source.datasets import Source, open_source
from batchcap.source.digest import DigestSet, NearIndex, NearKey, content_digest, near_key
from batchcap.source.read import load_batch

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


def _bucket(value: int, buckets: tuple[tuple[int, str], ...], last: str) -> str:
    for bound, label in buckets:
        if value <= bound:
            return label
    return last


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the pass learnt of one file. ``error`` is the reason ``run`` would record (file not sent)."""

    path: str
    size: int
    mime: str | None = None
    dims: tuple[int, int] | None = None
    digest: bytes | None = None
    error: str | None = None
    header_error: str | None = None
    near: NearKey | None = None


def inspect(item: LoadedImage | tuple[ImageJob, InputError], *, near: bool = False) -> FileFacts:
    """Judge one loaded file (pure): hash, format, dimensions from the header."""
    if not isinstance(item, LoadedImage):
        job, err = item
        return FileFacts(job.path, job.size, error=str(err))
    data = item.data
    dims, header_error = header_size(data, item.mime)
    return FileFacts(
        item.job.path, item.job.size, item.mime, dims, content_digest(data), None, header_error,
        near_key(data) if near and header_error is None else None,
    )


def header_size(data: bytes, mime: str) -> tuple[tuple[int, int] | None, str | None]:
    """``((width, height), None)`` from the header, or ``(None, reason)`` when the header is unreadable.

    Hand-parsed for JPEG, PNG, GIF, WebP and BMP (~1 us; Pillow's lazy ``Image.open`` costs ~20 us, more
    than everything else ``check`` does per file); TIFF, and anything the quick parse does not follow,
    goes to Pillow.
    """
    try:
        dims = _quick_size(data, mime)
    except (IndexError, ValueError):
        dims = None
    if dims is not None and dims[0] > 0 and dims[1] > 0:
        return dims, None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return (int(im.width), int(im.height)), None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _be16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _le(data: bytes, at: int, n: int) -> int:
    if at + n > len(data):
        raise IndexError(at)
    return int.from_bytes(data[at : at + n], "little")


def _quick_size(data: bytes, mime: str) -> tuple[int, int] | None:
    if mime == "image/png":
        if data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if mime == "image/jpeg":
        i, n = 2, len(data)
        while i + 9 <= n:
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return _be16(data, i + 7), _be16(data, i + 5)
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if marker in (0xD9, 0xDA):  # end, or scan data before any frame header
                return None
            i += 2 + _be16(data, i + 2)
        return None
    if mime == "image/gif":
        return _le(data, 6, 2), _le(data, 8, 2)
    if mime == "image/webp":
        chunk = data[12:16]
        if chunk == b"VP8 ":
            return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
        if chunk == b"VP8L":
            bits = _le(data, 21, 4)
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
        return None
    if mime == "image/bmp":
        if _le(data, 14, 4) == 12:
            return _le(data, 18, 2), _le(data, 20, 2)
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    return None


@dataclass(slots=True)
class Inventory:
    """The counts ``batchcap check`` reports; ``to_dict`` is its ``--json`` (keys are a contract)."""

    files: int = 0  #: image files found
    images: int = 0  #: readable ones (what run would send or skip)
    unreadable: int = 0
    duplicates: int = 0  #: readable images whose content an earlier one has (copies beyond the first)
    near_duplicates: int = 0  #: with --dedupe near: not exact copies, but near an earlier image
    already_done: int = 0  #: files with an ok record in --out
    earlier_errors: int = 0  #: files whose final error in --out run skips (unless --retry-failed)
    to_caption: int = 0  #: requests a run would send: readable, not done, first of its content
    bytes: int = 0  #: on disk, every image file
    bytes_to_send: int = 0  #: of the to_caption images, after preparation (see bytes_to_send_method)
    bytes_to_send_method: str = ""
    header_unreadable: int = 0  #: pass the structural check (so run sends them) but Pillow reads no header
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
        self, inv: Inventory, *, done: JournalIndex, skip: JournalIndex, dedupe: Dedupe,
        upload: UploadModel, probe: int, max_side: int = 1024, seed: int = 0,
    ) -> None:
        self.inv = inv
        self.done = done if len(done) else None
        self.skip = skip if len(skip) else None
        self.dedupe = dedupe
        self.upload = upload
        self.probe = probe
        self.max_side = max_side
        self.rng = random.Random(seed)  # the probe's sample: reproducible for one folder
        self.offered = 0  # images offered to the probe's sample so far
        self.all_seen = DigestSet()
        self.pending_seen = DigestSet() if self.skip is not None else self.all_seen
        self.near_all = NearIndex() if dedupe == "near" else None
        self.near_pending = (NearIndex() if self.skip is not None else self.near_all) if dedupe == "near" else None
        self.first_path: dict[bytes, str] = {}  # only for the few duplicate examples: bounded below

    def add(self, facts: FileFacts, loaded: LoadedImage | None) -> None:
        inv = self.inv
        inv.files += 1
        inv.bytes += facts.size
        inv.by_file_size[_bucket(facts.size, SIZE_BUCKETS, ">20MB")] += 1
        if self.done is not None and facts.path in self.done:
            inv.already_done += 1
        pending = self.skip is None or facts.path not in self.skip
        if facts.error is not None:
            inv.unreadable += 1
            reasons = inv.unreadable_reasons
            if facts.error in reasons or len(reasons) < _MAX_REASONS:
                reasons[facts.error] += 1
            else:
                reasons["(other reasons)"] += 1
            if len(inv.unreadable_examples) < _MAX_EXAMPLES:
                inv.unreadable_examples.append({"path": facts.path, "reason": facts.error})
            return
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
        copy = self.dedupe != "off" and not self.all_seen.add(facts.digest)
        if copy:
            inv.duplicates += 1
            if len(inv.duplicate_examples) < _MAX_EXAMPLES and facts.digest in self.first_path:
                inv.duplicate_examples.append({"path": facts.path, "duplicate_of": self.first_path[facts.digest]})
        elif len(self.first_path) < 10_000:
            self.first_path[facts.digest] = facts.path
        near_copy = False
        if not copy and self.near_all is not None and facts.near is not None:
            near_copy = self.near_all.original(facts.near, facts.path) is not None
            if near_copy:
                inv.near_duplicates += 1
        if not pending:
            return
        if self.pending_seen is not self.all_seen:
            if self.dedupe != "off" and not self.pending_seen.add(facts.digest):
                return
        elif copy:
            return
        if self.near_pending is not None and facts.near is not None:
            if self.near_pending is self.near_all:
                if near_copy:
                    return
            elif self.near_pending.original(facts.near, facts.path) is not None:
                return
        inv.to_caption += 1
        pixels = sent_pixels(facts.dims, self.max_side)
        if pixels is None:
            inv.pixels_unknown += 1
        else:
            inv.pixels_to_send += pixels
        if loaded is not None:
            inv.bytes_to_send += self.upload.sent_bytes(loaded.data, facts.mime, facts.dims)
            if self.probe:
                self.sample(loaded, pixels)

    def sample(self, loaded: LoadedImage, pixels: int | None) -> None:
        """Reservoir sampling (Algorithm R): after k images each is in the probe with probability N/k."""
        inv = self.inv
        self.offered += 1
        if len(inv.probe_images) < self.probe:
            inv.probe_images.append(loaded)
            inv.probe_pixels.append(pixels)
            return
        j = self.rng.randrange(self.offered)
        if j < self.probe:
            inv.probe_images[j], inv.probe_pixels[j] = loaded, pixels


def sent_pixels(dims: tuple[int, int] | None, max_side: int) -> int | None:
    """Pixels of an image of ``dims`` once prepared: the long side scaled down to ``max_side`` (0: as it is)."""
    if dims is None or min(dims) < 1:
        return None
    w, h = dims
    scale = min(1.0, max_side / max(w, h)) if max_side else 1.0
    return max(1, round(w * scale) * round(h * scale))


def _work(jobs: list[ImageJob], max_bytes: int, near: bool) -> list[tuple[FileFacts, LoadedImage | None]]:
    """In a worker thread: read, judge and hash one batch."""
    out = []
    for item in load_batch(jobs, max_bytes=max_bytes):
        out.append((inspect(item, near=near), item if isinstance(item, LoadedImage) else None))
    return out


def inventory(
    root: Path | str | Source,
    *,
    out: Path | None = None,
    dedupe: Dedupe = "exact",
    max_image_mb: float = 20.0,
    follow_symlinks: bool = False,
    upload: UploadModel | None = None,
    readers: int = 2,
    batch_size: int = 64,
    probe: int = 0,
    retry_failed: bool = False,
    max_side: int = 1024,
    clock: Any = time.monotonic,
) -> Inventory:
    """Take stock of ``root`` (and of ``out``, the journal a run would resume). Sends nothing.

    ``root`` is a source (``batchcap.source.datasets``), or an input to open as one: a folder, a dataset, a URL.

    ``probe`` keeps N of the images a run would send, sampled uniformly over the input (bounded: N files in
    memory), for a probe.
    Raises ``ConfigError`` for a missing folder, ``JournalError`` for a journal that cannot be read.
    """
    started = clock()
    source = open_source(root, follow_symlinks=follow_symlinks) if isinstance(root, Path | str) else root
    upload = upload or Sampled(PrepareModel(), every=50)
    done = skip = JournalIndex()
    if out is not None:
        done = load_index(out, retry_failed=True, repair=False)  # ok records only
        skip = done if (retry_failed or not done.error_final) else load_index(out, repair=False)
    inv = Inventory(dedupe=dedupe, bytes_to_send_method=upload.describe())
    inv.earlier_errors = 0 if retry_failed else done.error_final
    tally = _Tally(inv, done=done, skip=skip, dedupe=dedupe, upload=upload, probe=probe, max_side=max_side)

    def scan_error(path: str, exc: OSError) -> None:
        inv.scan_problems += 1

    max_bytes = int(max_image_mb * 1024 * 1024)
    batches: Iterator[list[ImageJob]] = source.batches(batch_size=batch_size, on_error=scan_error,
                                                       max_bytes=max_bytes)
    near = dedupe == "near"
    with ThreadPoolExecutor(max_workers=max(1, readers), thread_name_prefix="batchcap-check") as pool:
        pending: deque[Future[list[tuple[FileFacts, LoadedImage | None]]]] = deque()
        for jobs in batches:
            pending.append(pool.submit(_work, jobs, max_bytes, near))
            if len(pending) >= 2 * max(1, readers):
                for facts, loaded in pending.popleft().result():
                    tally.add(facts, loaded)
        while pending:
            for facts, loaded in pending.popleft().result():
                tally.add(facts, loaded)
    inv.elapsed_s = clock() - started
    return inv
