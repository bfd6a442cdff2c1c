"""Every input ``run``, ``check``, ``export`` and ``report`` take, behind one interface: ``open_source(INPUT)``.

    source = open_source("hf://datasets/acme/photos", image_column=None, token=token)
    for batch in source.batches(batch_size=64, skip=done.__contains__, shard=shard, on_error=record):
        ...   # list[ImageJob]; a dataset image's bytes come with its job (``job.data``)

What INPUT may be, and the id each image is journalled under:

==========================================  ======================================  ==============================
INPUT                                       read as                                 image id
==========================================  ======================================  ==============================
a folder of images                          ``scan`` (local) / one listing (URL)    ``sub/photo.jpg``
a ``.parquet`` file                         row batches of its image column         ``train-00000.parquet#1234``
a ``.tar`` / ``.tar.gz`` (WebDataset)       its members, front to back              ``shard-00001.tar/000042.jpg``
a folder of ``.parquet`` or ``.tar`` shards  each shard in path order                ``data/train-00000.parquet#12``
any of these as an fsspec URL               the same, through fsspec                the same
==========================================  ======================================  ==============================

A folder is a dataset when parquet or tar files outnumber images among its first files (``location.survey``).
Shards (``--shard I/N``, ``--ray``) split a folder of images by each image's id, a tar dataset by whole tars, and
a parquet dataset by row groups (``FILE@GROUP``), so no byte is read by two shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from batchcap.errors import ConfigError, SourceProblem
from batchcap.models import ImageJob
from batchcap.source.location import FileKind, Place, data_kind, image_ext, place, stat_kind
from batchcap.source.scan import OnError, batched, scan_batches
from batchcap.source.shard import Shard

__all__ = [
    "UNDERSTOOD",
    "Source",
    "SourceKind",
    "open_source",
]

SourceKind = Literal["folder", "parquet", "webdataset"]
Skip = Callable[[str], bool]

#: What INPUT may be, for the message an input batchcap cannot read gets.
UNDERSTOOD = ("a folder of images, a .parquet file, a WebDataset .tar (or .tar.gz), a folder of .parquet or .tar "
              "shards, or an fsspec URL of any of these (hf://datasets/ORG/NAME/..., file://..., memory://...)")


class Source(Protocol):
    """A place images come from; ``batches`` may be called more than once (each call reads afresh)."""

    @property
    def kind(self) -> SourceKind: ...

    @property
    def location(self) -> str:
        """The input as the manifest keeps it: an absolute local path, or the URL as given."""

    @property
    def root(self) -> Path | None:
        """The local folder the images are files in (a local folder of images), else None: no sidecars beside
        the images, and nothing to read again by path."""

    def batches(
        self,
        *,
        batch_size: int = 64,
        max_batch_bytes: int = 64 * 1024 * 1024,
        skip: Skip | None = None,
        shard: Shard | None = None,
        on_error: OnError | None = None,
        max_bytes: int | None = None,
    ) -> Iterator[list[ImageJob]]:
        """The images, in a stable order, in lists of at most ``batch_size`` (and ``max_batch_bytes``), without
        those ``skip(id)`` says are done and those of other shards. What cannot be read goes to
        ``on_error(id, exc)``, for this shard only. Images over ``max_bytes`` come without their bytes."""

    def context_names(self) -> frozenset[str]:
        """The names its images' ``context`` holds, for prompt templates (none but a dataset's)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest says of the source."""


class FolderSource:
    """A local folder of images: the streaming ``scan`` (the folder path's measured speed, unchanged)."""

    kind: SourceKind = "folder"

    def __init__(self, folder: Path, *, follow_symlinks: bool = False) -> None:
        self.folder = folder
        self.follow_symlinks = follow_symlinks

    @property
    def location(self) -> str:
        return str(self.folder)

    @property
    def root(self) -> Path:
        return self.folder

    def batches(
        self, *, batch_size: int = 64, max_batch_bytes: int = 64 * 1024 * 1024, skip: Skip | None = None,
        shard: Shard | None = None, on_error: OnError | None = None, max_bytes: int | None = None,
    ) -> Iterator[list[ImageJob]]:
        if shard is not None:
            skip = shard.skip_others(skip)
            if on_error is not None:
                on_error = _owned_errors(shard, on_error)
        return scan_batches(self.folder, batch_size=batch_size, max_batch_bytes=max_batch_bytes, skip=skip,
                            follow_symlinks=self.follow_symlinks, on_error=on_error)

    def context_names(self) -> frozenset[str]:
        return frozenset()  # files in a folder bring no context of their own

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location}

    def __repr__(self) -> str:
        return f"<FolderSource {self.folder}>"


def _owned_errors(shard: Shard, on_error: OnError) -> OnError:
    def owned(path: str, exc: OSError) -> None:
        if shard.owns(path):  # one shard records it, once
            on_error(path, exc)

    return owned


class RemoteFolderSource:
    """A folder of images at a URL: one listing, then each image read through fsspec by a reader thread."""

    kind: SourceKind = "folder"
    root = None

    def __init__(self, where: Place, files: list[tuple[str, int]]) -> None:
        self.where = where
        self.files = files

    @property
    def location(self) -> str:
        return self.where.text

    def batches(
        self, *, batch_size: int = 64, max_batch_bytes: int = 64 * 1024 * 1024, skip: Skip | None = None,
        shard: Shard | None = None, on_error: OnError | None = None, max_bytes: int | None = None,
    ) -> Iterator[list[ImageJob]]:
        if shard is not None:
            skip = shard.skip_others(skip)
        jobs = (ImageJob(rel, self.where.url(rel), size) for rel, size in self.files)
        return batched(jobs, batch_size, max_batch_bytes, skip)

    def context_names(self) -> frozenset[str]:
        return frozenset()  # files in a folder bring no context of their own

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location, "files": len(self.files)}

    def __repr__(self) -> str:
        return f"<RemoteFolderSource location={self.location!r} n_files={len(self.files)}>"


class DatasetSource:
    """Parquet or WebDataset shards (one file, or every one under a folder), read one after the other."""

    root = None

    def __init__(self, kind: SourceKind, where: Place, files: list[str], *, image_column: str | None,
                 single: bool) -> None:
        self.kind = kind
        self.where = where
        self.files = files  #: relative to the input folder (a single file: its name)
        self.wanted_column = image_column  #: --image-column (None: found per file)
        self.single = single
        self.image_column: str | None = None  #: the column found in the first file (parquet)

    @property
    def location(self) -> str:
        return self.where.text

    def open(self, rel: str) -> Any:
        """A binary file object for one data file (``rel`` as in ``files``)."""
        return self.where.open("" if self.single else rel)

    def check(self) -> None:
        """Fail early, on the first file, for what would fail every file: no image column, no pyarrow."""
        if self.kind != "parquet" or not self.files:
            return
        from batchcap.source.parquet import ParquetImages, require_pyarrow

        require_pyarrow()
        with self.open(self.files[0]) as f:
            try:
                self.image_column = ParquetImages(f, self.files[0], self.wanted_column).image
            except SourceProblem as exc:
                raise ConfigError(f"{self.location}: {self.files[0]} is {exc.strerror}") from None
            except OSError as exc:
                raise ConfigError(f"cannot read {self.location}: {exc.strerror or exc}") from None

    def batches(
        self, *, batch_size: int = 64, max_batch_bytes: int = 64 * 1024 * 1024, skip: Skip | None = None,
        shard: Shard | None = None, on_error: OnError | None = None, max_bytes: int | None = None,
    ) -> Iterator[list[ImageJob]]:
        return batched(self.jobs(skip=skip, shard=shard, on_error=on_error, max_bytes=max_bytes),
                       batch_size, max_batch_bytes, None)

    def jobs(
        self, *, skip: Skip | None = None, shard: Shard | None = None, on_error: OnError | None = None,
        max_bytes: int | None = None,
    ) -> Iterator[ImageJob]:
        """Every image of every owned data file, in order (``batches`` cuts this stream into lists)."""
        for rel in self.files:
            if self.kind == "webdataset" and shard is not None and not shard.owns(rel):
                continue
            try:
                yield from self._file_jobs(rel, skip, shard, on_error, max_bytes)
            except OSError as exc:
                if on_error is not None:
                    on_error(rel, exc if isinstance(exc, SourceProblem) else SourceProblem(_os_reason(exc)))

    def _file_jobs(
        self, rel: str, skip: Skip | None, shard: Shard | None, on_error: OnError | None, max_bytes: int | None,
    ) -> Iterator[ImageJob]:
        with self.open(rel) as f:
            if self.kind == "webdataset":
                from batchcap.source.webdataset import tar_jobs

                yield from tar_jobs(f, rel, done=skip, max_bytes=max_bytes)
                return
            from batchcap.source.parquet import ParquetImages

            try:
                images = ParquetImages(f, rel, self.wanted_column or self.image_column)
            except ConfigError as exc:  # this file lacks the column the first one has
                raise SourceProblem(str(exc)) from None
            owns = None if shard is None or shard.count == 1 else (lambda g: shard.owns(f"{rel}@{g}"))
            yield from images.jobs(owns=owns, done=skip, max_bytes=max_bytes, on_error=on_error)

    def context_names(self) -> frozenset[str]:
        """What a prompt template may name of its images (issue 16): a parquet's small columns (the first file's),
        a WebDataset sample's text members by extension (the first sample's). Empty when it cannot be read."""
        if not self.files:
            return frozenset()
        try:
            with self.open(self.files[0]) as f:
                if self.kind == "parquet":
                    from batchcap.source.parquet import ParquetImages

                    return frozenset(ParquetImages(f, self.files[0], self.wanted_column or self.image_column).context)
                from batchcap.source.webdataset import tar_jobs

                for job in tar_jobs(f, self.files[0]):
                    return frozenset(job.context or {})
        except (OSError, ConfigError):
            pass
        return frozenset()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "location": self.location, "files": len(self.files)}
        if self.kind == "parquet":
            out["image_column"] = self.image_column or self.wanted_column
        return out

    def __repr__(self) -> str:
        return f"<DatasetSource {self.kind} location={self.location!r} n_files={len(self.files)}>"


def _os_reason(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


_KINDS: dict[str, SourceKind] = {"parquet": "parquet", "tar": "webdataset"}


def open_source(
    value: str | Path,
    *,
    image_column: str | None = None,
    follow_symlinks: bool = False,
    token: str | None = None,
) -> FolderSource | RemoteFolderSource | DatasetSource:
    """The source INPUT names (see the module doc). Raises ``ConfigError`` (exit 2: nothing sent) for an input
    that does not exist or is not one of the kinds understood, and for a dataset without an image column
    (``image_column``: ``--image-column``)."""
    text = str(value)
    where = place(text, token=token)
    if where.local:
        what = stat_kind(where.path)
        if what == "missing":
            raise ConfigError(f"input {text} does not exist; check the path (batchcap reads {UNDERSTOOD})")
        if what == "other":
            raise ConfigError(f"cannot read input {text}; check the path and its permissions")
        is_dir = what == "dir"
    else:
        try:
            is_dir = where.is_dir()
            exists = is_dir or where.is_file()
        except Exception as exc:  # noqa: BLE001  fsspec backends raise their own kinds: the one boundary here
            raise ConfigError(f"cannot reach {text}: {type(exc).__name__}: {exc}"[:400]) from None
        if not exists:
            raise ConfigError(f"input {text} does not exist (batchcap reads {UNDERSTOOD})")
    if not is_dir:
        kind = data_kind(where.name())
        if kind is None:
            extra = " (one image is not a folder: pass its folder)" if image_ext(where.name()) else ""
            raise ConfigError(f"input {text} is not a kind batchcap reads{extra}; it reads {UNDERSTOOD}")
        source = DatasetSource(_KINDS[kind], where, [where.name()], image_column=image_column, single=True)
        source.check()
        return source
    counts = where.survey(follow_symlinks=follow_symlinks)
    order: tuple[FileKind, ...] = ("image", "parquet", "tar")  # ties: images, then parquet
    winner = max(order, key=lambda k: counts[k])
    if counts[winner] == 0 or winner == "image":
        if where.local:
            return FolderSource(Path(where.path), follow_symlinks=follow_symlinks)
        return RemoteFolderSource(where, list(where.walk(kinds=frozenset({"image"}))))
    files = [rel for rel, _size in where.walk(kinds=frozenset({winner}), follow_symlinks=follow_symlinks)]
    source = DatasetSource(_KINDS[winner], where, files, image_column=image_column, single=False)
    source.check()
    return source
