"""Where an input lives: a local path, or an fsspec URL (``hf://datasets/ORG/NAME/...``, ``memory://``, ``s3://``).

A local path and a ``file://`` URL are the same place (the URL is turned into the path), so both take the local
code paths. Every other URL goes through fsspec: ``Place`` lists and opens files on it with the same calls for
any protocol, and the dataset readers (``source.parquet``, ``source.webdataset``) only ever see a binary file
object. ``hf://`` takes the token found as everywhere else (``--token-file``, ``HF_TOKEN``, the HF token file).

``survey`` decides what a folder holds (images, parquet shards or tar shards) from a bounded walk: the kind with
the most files among the first ``PROBE_FILES`` wins, as ``datasets.load_dataset(folder)`` picks its builder from
the most common extension; ties go to images, then parquet.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from batchcap.errors import ConfigError, InputError

__all__ = [
    "DATA_EXTENSIONS",
    "PROBE_FILES",
    "FileKind",
    "Place",
    "data_kind",
    "image_ext",
    "is_url",
    "place",
    "read_url",
]

FileKind = Literal["image", "parquet", "tar"]
#: Files a folder's walk counts to decide what it holds (~1 ms for a local folder: names only, no stat).
PROBE_FILES = 1_000
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
#: Data-file suffixes: parquet shards, and WebDataset tars (plain or compressed: tarfile reads all three).
DATA_EXTENSIONS: dict[str, FileKind] = {".parquet": "parquet", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar"}


def is_url(text: str) -> bool:
    """``scheme://...`` (fsspec's form; chained URLs such as ``zip://x::file://y`` included)."""
    return _URL.match(text) is not None


def image_ext(name: str) -> bool:
    """Whether a file name has one of the image extensions the folder scan takes (case-insensitive)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def data_kind(name: str) -> FileKind | None:
    """``parquet`` or ``tar`` by the file name's suffix, else None."""
    low = name.lower()
    for suffix, kind in DATA_EXTENSIONS.items():
        if low.endswith(suffix) and len(low) > len(suffix):
            return kind
    return None


def _kind_of(name: str) -> FileKind | None:
    return "image" if image_ext(name) else data_kind(name)


@dataclass(frozen=True, slots=True)
class Place:
    """An input: ``fs`` None for a local path (``path`` absolute), else an fsspec filesystem and its path.

    ``text`` is what the manifest keeps and the user reads: the absolute local path, or the URL as given.
    """

    text: str
    path: str
    fs: Any = field(default=None, repr=False, compare=False)  #: holds the hf:// token: never in a repr

    @property
    def local(self) -> bool:
        return self.fs is None

    def join(self, rel: str) -> str:
        """The path of ``rel`` (POSIX, relative to this place) on its filesystem."""
        if not rel:
            return self.path
        if self.fs is None:
            return os.path.join(self.path, *rel.split("/"))
        return self.path.rstrip("/") + "/" + rel

    def url(self, rel: str) -> str:
        """A URL (or local path) that reads ``rel`` again: what a remote folder image keeps as its abspath."""
        if self.fs is None:
            return self.join(rel)
        return str(self.fs.unstrip_protocol(self.join(rel)))

    def open(self, rel: str = "") -> IO[bytes]:
        """A binary file object for ``rel`` (sequential reads; seekable where the filesystem is)."""
        if self.fs is None:
            return open(self.join(rel), "rb")
        return self.fs.open(self.join(rel), "rb")  # type: ignore[no-any-return]

    def is_dir(self) -> bool:
        if self.fs is None:
            return os.path.isdir(self.path)
        return bool(self.fs.isdir(self.path))

    def is_file(self) -> bool:
        if self.fs is None:
            return os.path.isfile(self.path)
        return bool(self.fs.isfile(self.path))

    def name(self) -> str:
        """The last part of the path: a single file's id prefix (``train-00000.parquet``)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1] if self.fs is not None else os.path.basename(self.path)

    def survey(self, *, follow_symlinks: bool = False, limit: int = PROBE_FILES) -> Counter[FileKind]:
        """How many images, parquet and tar files the first ``limit`` such files of this folder are."""
        counts: Counter[FileKind] = Counter()
        for rel, _size in self.walk(follow_symlinks=follow_symlinks, limit=limit, sizes=False):
            kind = _kind_of(rel.rsplit("/", 1)[-1])
            if kind is not None:
                counts[kind] += 1
        return counts

    def walk(
        self, *, kinds: frozenset[FileKind] | None = None, follow_symlinks: bool = False, limit: int | None = None,
        sizes: bool = True,
    ) -> Iterator[tuple[str, int]]:
        """``(relative path, size)`` of the files under this folder (of ``kinds``, if given), hidden ones left out.

        Local: a pre-order ``os.scandir`` walk in listing order, one folder handle at a time, stopping after
        ``limit`` matching files. Remote: one ``fs.find`` (a dataset repository lists in one call), sorted.
        ``sizes`` False: every size is 0, and a local walk costs no ``stat`` (a survey needs names only).
        """
        if self.fs is None:
            yield from _walk_local(self.path, kinds, follow_symlinks, limit, sizes)
            return
        root = self.path.rstrip("/")
        try:
            found = self.fs.find(root, detail=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot list {self.text}: {exc}") from None
        n = 0
        rels = []
        for full, info in found.items():
            rel = full[len(root) + 1 :] if full.startswith(root + "/") else full.rsplit("/", 1)[-1]
            if not _hidden(rel) and info.get("type") != "directory":
                rels.append((_preorder(rel), rel, full))
        rels.sort()
        for _, rel, full in rels:
            kind = _kind_of(rel.rsplit("/", 1)[-1])
            if kind is None or (kinds is not None and kind not in kinds):
                continue
            yield rel, int(found[full].get("size") or 0)
            n += 1
            if limit is not None and n >= limit:
                return


def _preorder(rel: str) -> tuple[tuple[int, str], ...]:
    """The sort key of the local walk's order: within a folder its files by name, then its subfolders."""
    parts = rel.split("/")
    return (*((1, p) for p in parts[:-1]), (0, parts[-1]))


def _hidden(rel: str) -> bool:
    """Dot files and folders (``.git/``, ``.cache/``), and ``__pycache__``-style ones: never data files."""
    return any(part.startswith((".", "__")) for part in rel.split("/"))


def _walk_local(
    root: str, kinds: frozenset[FileKind] | None, follow: bool, limit: int | None, sizes: bool = True
) -> Iterator[tuple[str, int]]:
    """Files of ``kinds`` in pre-order, sorted by name within a folder; only matching names are held."""
    stack: list[tuple[str, str]] = [(root, "")]
    seen: set[tuple[int, int]] = set()
    n = 0
    while stack:
        folder, rel = stack.pop()
        subdirs: list[str] = []
        files: list[tuple[str, int]] = []
        try:
            it = os.scandir(folder)
        except OSError:
            continue  # the scan proper records an unreadable folder; a listing only counts what it can read
        with it:
            for entry in it:
                name = entry.name
                if name.startswith((".", "__")):
                    continue
                try:
                    if not follow and entry.is_symlink():
                        continue
                    if entry.is_dir():
                        subdirs.append(name)
                        continue
                    kind = _kind_of(name)
                    if kind is None or (kinds is not None and kind not in kinds) or not entry.is_file():
                        continue
                    files.append((name, entry.stat().st_size if sizes else 0))
                except OSError:
                    continue
                if limit is not None and n + len(files) >= limit:  # a survey: enough seen, stop reading
                    break
        files.sort()
        for name, size in files:
            yield (rel + "/" + name if rel else name), size
            n += 1
            if limit is not None and n >= limit:
                return
        subdirs.sort()
        for name in reversed(subdirs):
            path = os.path.join(folder, name)
            if follow:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            stack.append((path, rel + "/" + name if rel else name))


def place(text: str, *, token: str | None = None) -> Place:
    """Where ``text`` points. Raises ``ConfigError`` for a protocol fsspec does not know or cannot load.

    ``file://`` URLs become local paths; ``token`` goes to ``hf://`` (and nowhere else).
    """
    if not is_url(text):
        path = os.path.abspath(os.path.expanduser(text))
        return Place(path, path)
    try:
        import fsspec.core
    except ImportError:
        raise ConfigError(
            f"{text}: reading a URL needs fsspec: pip install 'batchcap[datasets]' (or pass a local path)"
        ) from None
    protocol = text.split("://", 1)[0].lower()
    options: dict[str, Any] = {}
    if protocol == "hf" and token is not None:
        options["token"] = token
    try:
        fs, path = fsspec.core.url_to_fs(text, **options)
    except ImportError as exc:
        raise ConfigError(f"{text}: the {protocol}:// filesystem needs a package that is not installed ({exc}); "
                          "for hf:// pip install 'batchcap[datasets]'") from None
    except ValueError as exc:
        raise ConfigError(f"{text}: {exc} (fsspec knows file://, memory://, hf://, and those of installed "
                          "packages such as s3fs or gcsfs)") from None
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols and "::" not in text:
        local = os.path.abspath(str(path))
        return Place(local, local)
    return Place(text, str(path), fs)


def read_url(url: str, max_bytes: int) -> bytes:
    """Read one remote image (a folder image at a URL); every failure is an ``InputError`` with the reason."""
    try:
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(url)
        with fs.open(path, "rb") as f:
            data: bytes = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError("cannot read: file vanished since the listing") from None
    except Exception as exc:  # noqa: BLE001  fsspec backends raise their own kinds: this is the one boundary
        raise InputError(f"cannot read {url}: {type(exc).__name__}: {exc}"[:300]) from None
    return data


def stat_kind(path: str) -> Literal["dir", "file", "missing", "other"]:
    """What a local path is (following links), for the messages ``open_source`` gives."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "other"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"
