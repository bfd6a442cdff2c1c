"""Find the images under a folder, as a stream of ``ImageJob`` in a stable order.

The scan never holds the whole tree: it walks with ``os.scandir`` and an explicit stack
of pending folders, keeps one folder handle open at a time, and yields as it goes, so a
folder of millions of files costs the memory of one folder listing at most (see
``sort_limit``). Order is deterministic, so two runs over the same tree agree:

* pre-order, depth first: the images of a folder come first, sorted by name, then each
  subfolder in name order, recursively;
* a folder with more than ``sort_limit`` candidates (images + subfolders) is not sorted:
  its images are yielded in the filesystem's own order while it is read. That order is
  stable for an unchanged folder on the same filesystem, and it keeps memory flat for a
  single folder of millions of files. Resume does not depend on order anyway: the
  journal is keyed by path.

``ImageJob.path`` (the journal key) is POSIX and relative to the root. Whatever the scan must skip goes
to ``on_error(path, exc)`` with a printable path (undecodable bytes escaped as ``\xff``) and, for a folder,
a trailing ``/``: a name that is not valid UTF-8 (it cannot be a JSON key), an unreadable folder, a file that
vanished. The run turns each into an error record, so nothing is skipped silently.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from batchcap.errors import ConfigError, SourceProblem
from batchcap.models import ImageJob
from batchcap.redact import shown
from batchcap.words import plural

__all__ = [
    "DEFAULT_EXTENSIONS",
    "OnError",
    "Passed",
    "batched",
    "first_image",
    "no_images_message",
    "problem_reason",
    "scan",
    "scan_batches",
]

DEFAULT_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)




#: Called with a relative path (printable; a folder's ends with "/") and the error for anything skipped.
OnError = Callable[[str, OSError], None]


@dataclass(slots=True)
class Passed:
    """What a scan passed over without an error record: files that are not images by their name, symbolic links
    not followed, and (from ``on_error``) entries it could not read. Counted only when a caller asks (``passed=``)."""

    files: int = 0
    links: int = 0
    unreadable: int = 0
    extensions: Counter[str] = field(default_factory=Counter)  #: of ``files``; "" for a name without one

    def file(self, name: str) -> None:
        self.files += 1
        if len(self.extensions) < 256 or _ext(name) in self.extensions:  # bounded: a few hundred kinds at most
            self.extensions[_ext(name)] += 1


def scan(
    root: Path,
    *,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    follow_symlinks: bool = False,
    sort_limit: int = 65_536,
    on_error: OnError | None = None,
    passed: Passed | None = None,
) -> Iterator[ImageJob]:
    """Stream the images under ``root``; the root is checked now, the tree lazily.

    Extensions match case-insensitively (``IMG_01.JPG``). Symlinks, to files or folders,
    are skipped unless ``follow_symlinks``; when followed, a folder already visited (same
    device and inode) is skipped silently, which breaks loops. Unreadable subfolders and
    files that vanish mid-scan go to ``on_error(relpath, exc)`` and the scan continues. ``passed``, when
    given, counts what was passed over without a word (other files, links not followed).

    Raises ``ConfigError`` when the root is missing, not a folder, or unreadable.
    """
    root_abs = os.path.abspath(os.fspath(root))
    try:
        st = os.stat(root_abs)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(root_abs):
                pass
    except FileNotFoundError:
        raise ConfigError(f"input folder {shown(root)} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read input folder {shown(root)}: {exc.strerror or exc}; check the path and its permissions"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{shown(root)} is not a folder; pass the folder that holds the images")
    exts = frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if sort_limit < 0:
        raise ValueError(f"sort_limit must be >= 0 (got {sort_limit})")
    walker = _Walker(exts, follow_symlinks, sort_limit, on_error or _ignore, passed)
    return walker.walk(root_abs)


def first_image(root: Path, *, follow_symlinks: bool = False) -> tuple[ImageJob | None, Passed]:
    """The first image the scan finds under ``root`` (in listing order: no folder is sorted), or None with what
    was passed over instead, for ``no_images_message``. Stops at the first image, so a full folder costs
    one folder listing at most. Raises ``ConfigError`` as ``scan`` does for the root."""
    passed = Passed()

    def unreadable(path: str, exc: OSError) -> None:
        passed.unreadable += 1

    for job in scan(root, follow_symlinks=follow_symlinks, sort_limit=0, on_error=unreadable, passed=passed):
        return job, passed
    return None, passed


def no_images_message(root: Path, passed: Passed, *, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> str:
    """``no images found in DIR (N files skipped: .txt, .json ...)`` and what to do about it."""
    shown_root = shown(root)
    if not (passed.files or passed.links or passed.unreadable):
        return f"no images found in {shown_root}: the folder is empty"
    reasons = []
    if passed.files:
        ranked = sorted(passed.extensions.items(), key=lambda kv: (-kv[1], kv[0] == "", kv[0]))
        kinds = [ext or "(no extension)" for ext, _ in ranked[:6]]
        more = " ..." if len(passed.extensions) > len(kinds) else ""
        reasons.append(f"{plural(passed.files, 'file')} skipped: {', '.join(kinds)}{more}")
    if passed.links:
        reasons.append(f"{plural(passed.links, 'symbolic link')} not followed: add --follow-symlinks")
    if passed.unreadable:
        reasons.append(f"{plural(passed.unreadable, 'entry', 'entries')} could not be read")
    known = " ".join(sorted(extensions))
    return f"no images found in {shown_root} ({'; '.join(reasons)}); batchcap captions files ending in {known}"


def scan_batches(
    root: Path,
    batch_size: int = 256,
    skip: Callable[[str], bool] | None = None,
    *,
    max_batch_bytes: int = 64 * 1024 * 1024,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    follow_symlinks: bool = False,
    sort_limit: int = 65_536,
    on_error: OnError | None = None,
) -> Iterator[list[ImageJob]]:
    """``scan`` in lists of at most ``batch_size`` jobs, without those ``skip(path)`` says are done.

    The pipeline pulls one batch per thread hop (``anyio.to_thread.run_sync(next, it, None)``)
    and reads it with ``images.load_batch`` in the same hop. A batch is also closed once its
    files add up to ``max_batch_bytes`` (by scan-time size), so a folder of 20 MB photos does
    not put 256 x 20 MB in memory at once. Not thread-safe: one consumer at a time.
    """
    if batch_size < 1 or max_batch_bytes < 1:
        raise ValueError(f"batch_size and max_batch_bytes must be >= 1 (got {batch_size}, {max_batch_bytes})")
    jobs = scan(
        root,
        extensions=extensions,
        follow_symlinks=follow_symlinks,
        sort_limit=sort_limit,
        on_error=on_error,
    )
    return batched(jobs, batch_size, max_batch_bytes, skip)


def batched(
    jobs: Iterator[ImageJob], batch_size: int, max_bytes: int, skip: Callable[[str], bool] | None
) -> Iterator[list[ImageJob]]:
    batch: list[ImageJob] = []
    nbytes = 0
    for job in jobs:
        if skip is not None and skip(job.path):
            continue
        batch.append(job)
        nbytes += job.size
        if len(batch) >= batch_size or nbytes >= max_bytes:
            yield batch
            batch = []
            nbytes = 0
    if batch:
        yield batch


def _ignore(relpath: str, exc: OSError) -> None:
    """Default ``on_error``: the caller did not ask to hear about skipped entries."""


def _printable(rel: str) -> str:
    """A relative path that can be printed even when the name holds undecodable bytes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace") if rel else "."


def _folder(rel: str) -> str:
    """A folder's printable path, marked as a folder by its trailing slash."""
    return _printable(rel) + "/"


def problem_reason(path: str, exc: OSError) -> str:
    """The short reason an error record keeps for something the scan skipped."""
    if isinstance(exc, SourceProblem):
        return str(exc.strerror)
    what = "folder" if path.endswith("/") else "file"
    if exc.errno == errno.EILSEQ:
        return f"{what} name is not valid UTF-8, so it cannot be a journal key; rename it"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read {what}: permission denied"
    if exc.errno == errno.ENOENT:
        return f"cannot read {what}: it vanished during the scan"
    return f"cannot read {what}: {(exc.strerror or str(exc)).lower()}"


class _Walker:
    """One scan's settings and loop guard; ``walk`` is the generator."""

    __slots__ = ("exts", "follow", "on_error", "passed", "sort_limit")

    def __init__(
        self, exts: frozenset[str], follow: bool, sort_limit: int, on_error: OnError, passed: Passed | None = None
    ) -> None:
        self.exts = exts
        self.follow = follow
        self.sort_limit = sort_limit
        self.on_error = on_error
        self.passed = passed

    def walk(self, root_abs: str) -> Iterator[ImageJob]:
        # Only needed when symlinks are followed: without them a tree has no loops. Checked when
        # a folder is entered, so of two routes to one folder the first in scan order wins.
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[str, str]] = [(root_abs, "")]
        while stack:
            dirpath, rel = stack.pop()
            if self.follow:
                try:
                    st = os.stat(dirpath)
                except OSError as exc:
                    self.on_error(_folder(rel), exc)
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            subdirs: list[str] = []
            yield from self._folder(dirpath, rel, subdirs)
            if len(subdirs) <= self.sort_limit:
                subdirs.sort()
            prefix = rel + "/" if rel else ""
            # Reversed: the stack pops the first name first.
            stack.extend((os.path.join(dirpath, n), prefix + n) for n in reversed(subdirs))

    def _folder(self, dirpath: str, rel: str, subdirs: list[str]) -> Iterator[ImageJob]:
        """Yield one folder's images; collect its subfolder names into ``subdirs``."""
        prefix = rel + "/" if rel else ""
        try:
            it = os.scandir(dirpath)
        except OSError as exc:
            self.on_error(_folder(rel), exc)
            return
        buffered: list[tuple[str, os.DirEntry[str], bool]] | None = []
        with it:
            while True:
                try:
                    entry = next(it, None)
                except OSError as exc:  # the folder went away or the disk failed mid-listing
                    self.on_error(_folder(rel), exc)
                    break
                if entry is None:
                    break
                is_dir = self._classify(entry, prefix)
                if is_dir is None:
                    continue
                if buffered is None:
                    if (job := self._emit(entry, is_dir, prefix, subdirs)) is not None:
                        yield job
                    continue
                buffered.append((entry.name, entry, is_dir))
                if len(buffered) > self.sort_limit:  # too big to sort: stream in listing order
                    for _, e, d in buffered:
                        if (job := self._emit(e, d, prefix, subdirs)) is not None:
                            yield job
                    buffered = None
        if buffered is not None:
            buffered.sort(key=_name)
            for _, e, d in buffered:
                if (job := self._emit(e, d, prefix, subdirs)) is not None:
                    yield job

    def _classify(self, entry: os.DirEntry[str], prefix: str) -> bool | None:
        """True for a folder to visit, False for an image file, None to skip."""
        name = entry.name
        try:
            if not self.follow and entry.is_symlink():
                if self.passed is not None:
                    self.passed.links += 1
                return None
            if entry.is_dir():
                is_dir = True
            elif _ext(name) in self.exts and entry.is_file():
                is_dir = False
            else:
                if self.passed is not None:
                    self.passed.file(name)
                return None
        except OSError as exc:
            self.on_error(_printable(prefix + name), exc)
            return None
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                msg = "name is not valid UTF-8, so it cannot be a journal key; rename it"
                path = _folder(prefix + name) if is_dir else _printable(prefix + name)
                self.on_error(path, OSError(errno.EILSEQ, msg))
                return None
        return is_dir

    def _emit(self, entry: os.DirEntry[str], is_dir: bool, prefix: str, subdirs: list[str]) -> ImageJob | None:
        """The job for an image (None for a folder, noted in ``subdirs``, or a file gone since the listing).

        A plain function, not a generator: a generator per file cost ~0.3 us of the scan's ~4 us.
        """
        if is_dir:
            subdirs.append(entry.name)
            return None
        try:
            size = entry.stat(follow_symlinks=self.follow).st_size
        except OSError as exc:  # vanished since the listing
            self.on_error(_printable(prefix + entry.name), exc)
            return None
        return ImageJob(prefix + entry.name, entry.path, size)


#: The sort key of a buffered folder entry: its name (names are unique in a folder).
_name = operator.itemgetter(0)


def _ext(name: str) -> str:
    """``os.path.splitext(name)[1].lower()`` for a bare file name, at a third of its cost (it runs per file).

    As splitext: the last dot starts the extension unless only dots come before it (``.jpg``, ``..jpg``: none).
    """
    i = name.rfind(".")
    if i <= 0 or (name[0] == "." and not name[:i].strip(".")):
        return ""
    return name[i:].lower()
