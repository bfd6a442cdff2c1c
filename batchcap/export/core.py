"""``export(journal, options)``: the captions of a run in the layout a trainer or a loader reads.

One line (row, sidecar) per ok image, in path order; error records are left out and counted (the
``openai-batch`` format writes them to its own errors file). Each format is one writer function in
:data:`WRITERS`; they share the selection pass, the path checks and the atomic file helpers.
"""

from __future__ import annotations

import csv
import hashlib
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import orjson

from batchcap.errors import ConfigError, UsageError
from batchcap.export.card import MARKER, CardFacts, card_text
from batchcap.export.convert import CONVERT_CHOICES, Convert, needs_plugin, would_convert
from batchcap.export.files import (
    atomic_bytes,
    atomic_text,
    place_image,
    replace_bytes,
    replace_text,
    sync_all,
)
from batchcap.export.items import (
    ExportImage,
    ImageCounts,
    converted_name,
    dataset_images,
    folder_image,
    prepare_bytes,
)
from batchcap.export.paths import Inside
from batchcap.export.select import Selection, read_records, select
from batchcap.export.shards import DEFAULT_SHARD_MB, ShardWriter
from batchcap.journal import manifest_path
from batchcap.source.datasets import Source, open_source
from batchcap.source.location import is_url
from batchcap.source.read import sniff

__all__ = [
    "FORMATS",
    "MODES",
    "ExportOptions",
    "ExportReport",
    "export",
    "input_dir_from_manifest",
    "manifest_path",
]

Format = Literal["imagefolder", "kohya", "csv", "parquet", "openai-batch"]
Mode = Literal["keep", "overwrite", "append", "prepend"]
FORMATS: tuple[Format, ...] = ("imagefolder", "kohya", "csv", "parquet", "openai-batch")
MODES: tuple[Mode, ...] = ("keep", "overwrite", "append", "prepend")
#: Joins an existing kohya sidecar and the new caption in append/prepend mode (tags are comma-separated).
SEPARATOR = ", "
_PARQUET_BATCH = 8192
#: The formats that are a dataset folder: they get a README.md dataset card (with --out).
DATASET_FORMATS = ("imagefolder", "parquet")
#: What ``hf upload`` publishes to until the user names the repository.
REPO_PLACEHOLDER = "YOUR-NAME/DATASET-NAME"


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to export where. ``out`` None: the format's default place (see the command's help)."""

    format: Format
    out: Path | None = None
    images: Path | str | None = None  #: the run's input (folder, dataset, URL); None: from the run manifest
    text_column: str = "text"
    ext: str = ".txt"
    mode: Mode = "keep"
    skip_flagged: bool = False
    convert: Convert = "auto"  #: images a reader cannot decode without a plugin (``export.convert``)
    shard_mb: float = DEFAULT_SHARD_MB  #: parquet: a shard is closed past this many MB of images
    repo: str | None = None  #: the Hub repository the printed ``hf upload`` command names
    image_column: str | None = None  #: a parquet input's image column (default: from the run manifest)

    def __post_init__(self) -> None:
        if self.convert not in CONVERT_CHOICES:
            raise UsageError(f"--convert must be one of {', '.join(CONVERT_CHOICES)} (got {self.convert!r})")
        if not self.shard_mb > 0:
            raise UsageError(f"--shard-mb must be > 0 (got {self.shard_mb!r})")


@dataclass(slots=True)
class ExportReport:
    """What an export did; ``left_out`` items are the ones worth a look (exit 1 from the command)."""

    outputs: list[Path] = field(default_factory=list)
    written: int = 0  #: ok images exported (their line or sidecar holds the caption now)
    errors: int = 0  #: images whose latest record is an error (left out, or in the errors file)
    flagged: int = 0  #: ok images left out by --skip-flagged
    refused: int = 0  #: paths that would land outside the folder
    bad_lines: int = 0
    first_bad_line: int | None = None
    missing: int = 0  #: ok images whose file is gone from the input folder
    conflicts: int = 0  #: two images mapping to one sidecar, or a sidecar that would be the image itself
    kept: int = 0  #: kohya sidecars already there and kept (--mode keep)
    unchanged: int = 0  #: files already up to date
    linked: int = 0
    copied: int = 0
    images: ImageCounts = field(default_factory=ImageCounts)  #: conversions, and images no decoder reads
    card: Path | None = None  #: the README.md dataset card written
    card_kept: Path | None = None  #: a README.md that batchcap did not write, left as it is
    upload: str | None = None  #: the ``hf upload`` command that publishes the folder

    @property
    def left_out(self) -> int:
        return self.refused + self.bad_lines + self.missing + self.conflicts + self.images.undecodable


def read_manifest(journal: Path) -> dict[str, Any] | None:
    """The run manifest beside ``journal`` (a run's or a merge's); None when absent or unreadable."""
    try:
        doc = orjson.loads(manifest_path(journal).read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def input_from_manifest(journal: Path) -> Path | str | None:
    """The input the run read (``config.input_dir``): a folder or dataset path, or a URL; None when unknown."""
    doc = read_manifest(journal)
    try:
        value = doc["config"]["input_dir"] if doc is not None else None
    except (KeyError, TypeError):
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    if is_url(value):
        return value
    folder = Path(value)
    if not folder.is_absolute() and not folder.exists() and (journal.parent / folder).exists():
        folder = journal.parent / folder
    return folder


def input_dir_from_manifest(journal: Path) -> Path | None:
    """``config.input_dir`` of the run manifest beside ``journal`` when it is a local folder; else None."""
    value = input_from_manifest(journal)
    return value if isinstance(value, Path) and value.is_dir() else None


def _image_column(journal: Path, options: ExportOptions) -> str | None:
    if options.image_column is not None:
        return options.image_column
    doc = read_manifest(journal)
    source = doc.get("source") if doc is not None else None
    column = source.get("image_column") if isinstance(source, dict) else None
    return column if isinstance(column, str) else None


def export(journal: Path, options: ExportOptions) -> ExportReport:
    """Run one export. Raises ``OSError`` (unreadable journal, unwritable output), ``UsageError`` (no input
    where one is needed, parquet without pyarrow), ``ConfigError`` (an input that cannot be read)."""
    writer = WRITERS[options.format]
    needs_images = options.format in ("imagefolder", "kohya", "parquet")
    given = options.images
    source: Source | None = None
    images: Path | None = None
    if needs_images:
        if options.format == "parquet":
            _require_pyarrow()
        where = given if given is not None else input_from_manifest(journal)
        if where is None:
            raise UsageError(
                f"no run manifest with the input beside {journal} ({manifest_path(journal).name}); "
                "pass --images INPUT (the folder or dataset that was captioned)"
            )
        try:
            source = open_source(where, image_column=_image_column(journal, options))
        except ConfigError as exc:
            raise UsageError(f"{exc}; pass --images INPUT") from None
        images = source.root
        if images is None and options.format == "kohya":
            raise UsageError(f"--format kohya writes captions beside image files, and {source.location} is a "
                             f"{source.kind} source; use --format imagefolder or parquet")
    sel = select(journal)
    report = ExportReport(
        refused=len(sel.refused), bad_lines=sel.bad_lines, first_bad_line=sel.first_bad_line, errors=len(sel.errors)
    )
    writer(_Job(journal, options, sel, images, report, source))
    if options.format in DATASET_FORMATS and report.card is not None:
        report.upload = upload_command(options.repo, report.card.parent, options.format)
    return report


def upload_command(repo: str | None, folder: Path, fmt: str) -> str:
    """The ``hf upload`` command (huggingface_hub's CLI) that publishes ``folder`` as a dataset repository; for
    parquet, the shards a previous upload left and this export no longer has are deleted in the same commit."""
    argv = ["hf", "upload", repo or REPO_PLACEHOLDER, str(folder.resolve()), ".", "--repo-type", "dataset"]
    if fmt == "parquet":
        argv += ["--delete", "data/*.parquet"]
    return shlex.join(argv)


@dataclass(slots=True)
class _Job:
    journal: Path
    options: ExportOptions
    sel: Selection
    images: Path | None  #: the input folder of a folder source (images are files there)
    report: ExportReport
    source: Source | None = None  #: the run's input, for the formats that hold images
    _guards: dict[Path, Inside] = field(default_factory=dict)
    _same: dict[Path, bool] = field(default_factory=dict)

    def in_place(self, root: Path) -> bool:
        """True when ``root`` is the input folder itself (nothing to link); resolved once per root."""
        same = self._same.get(root)
        if same is None:
            same = self._same[root] = self.images is not None and _same_folder(root, self.images)
        return same

    def dest(self, root: Path) -> Inside:
        guard = self._guards.get(root)
        if guard is None:
            guard = self._guards[root] = Inside(root)
        return guard

    def ok_records(self) -> Iterator[tuple[str, str]]:
        """(path, caption) of every ok image to export, in path order; flagged ones skipped on request."""
        for rec in self.ok_dicts():
            yield rec["path"], rec["caption"]

    def ok_dicts(self) -> Iterator[dict[str, Any]]:
        """Every ok record to export, in path order; flagged ones skipped on request."""
        skip = self.options.skip_flagged
        for rec in read_records(self.journal, self.sel.ok_items()):
            if skip and _flagged(rec):
                self.report.flagged += 1
                continue
            yield rec

    def images_in_order(self) -> Iterator[ExportImage]:
        """The images to export with their records: a folder's in path order, a dataset's in its own order."""
        counts = self.report.images
        if self.images is None:
            assert self.source is not None
            yield from dataset_images(self.source, self.journal, self.sel, counts,
                                      skip_flagged=self.options.skip_flagged)
            self.report.missing += counts.missing
            self.report.flagged += counts.flagged
            return
        guard = self.dest(self.images)
        for rec in self.ok_dicts():
            got = folder_image(guard, rec)
            if got is None:
                self.report.refused += 1
            elif isinstance(got, Path):
                self.report.missing += 1
            else:
                yield got

    def table_path(self, name: str, suffix: str) -> Path:
        """``DIR/name`` with --out, else ``results<suffix>`` beside the journal."""
        out = self.options.out
        return out / name if out is not None else self.journal.with_name(self.journal.stem + suffix)


def _flagged(rec: dict[str, Any]) -> bool:
    flags = rec.get("flags")
    return isinstance(flags, list) and len(flags) > 0


def text_columns(options: ExportOptions) -> list[str]:
    """The text columns of a table export (issue 16 makes this one column per task)."""
    return [options.text_column]


def text_values(options: ExportOptions, records: list[dict[str, Any]]) -> list[str | None]:
    """One image's records -> its value in each of ``text_columns`` (today: the one caption)."""
    return [records[0].get("caption")]


# ---------------------------------------------------------------------------------------------------------------
# imagefolder and kohya: files beside images.


def _place(job: _Job, item: ExportImage, dest_root: Path) -> Path | None:
    """Put one image into ``dest_root``: linked or copied byte for byte, or written converted. None: left out."""
    counts = job.report.images
    mode = job.options.convert
    if item.src is not None:
        mime = sniff(_head(item.src) or b"")
        if mime is None or not would_convert(mime, mode):
            if mime is not None and needs_plugin(mime):
                counts.kept_unreadable[mime.removeprefix("image/")] += 1
            return _link(job, item.src, item.name, dest_root)
        data = _read(item.src)
    else:
        assert item.data is not None
        data = item.data
    got = prepare_bytes(data, mode, counts)
    if got is None:
        return None
    out, mime = got
    dest = job.dest(dest_root)(item.name if out is data else converted_name(item.name, mime))
    if dest is None:
        job.report.refused += 1
        return None
    if replace_bytes(dest, out):
        job.report.copied += 1
    else:
        job.report.unchanged += 1
    return dest


def _link(job: _Job, src: Path, name: PurePosixPath, dest_root: Path) -> Path | None:
    """A folder image into the export as it is: a hard link, else a copy (nothing to do in place)."""
    if job.in_place(dest_root):
        return src
    dest = job.dest(dest_root)(name)
    if dest is None:
        job.report.refused += 1
        return None
    how = place_image(src, dest)
    if how == "linked":
        job.report.linked += 1
    elif how == "copied":
        job.report.copied += 1
    else:
        job.report.unchanged += 1
    return dest


def _head(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError:
        return None


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _imagefolder(job: _Job) -> None:
    root = job.options.out or job.images
    if root is None:
        raise UsageError(f"--format imagefolder of a {job.source.kind if job.source else 'dataset'} source needs "
                         "--out DIR (the images are written there)")
    root.mkdir(parents=True, exist_ok=True)
    column = job.options.text_column
    target = root / "metadata.jsonl"
    facts = CardFacts("imagefolder", 0, ["**"], text_columns(job.options))
    with atomic_bytes(target) as f:
        for item in job.images_in_order():
            placed = _place(job, item, root)
            if placed is None:
                continue
            name = placed.relative_to(root).as_posix() if not job.in_place(root) else str(item.name)
            f.write(orjson.dumps({"file_name": name, column: item.record["caption"]},
                                 option=orjson.OPT_APPEND_NEWLINE))
            job.report.written += 1
            _note(facts, item.record)
    job.report.outputs.append(target)
    if job.options.out is not None:
        _write_card(job, root, facts)


def _note(facts: CardFacts, rec: dict[str, Any]) -> None:
    """What the card counts of one exported record: its target, its flags."""
    target = rec.get("target")
    facts.targets[target if isinstance(target, str) and target else "unknown"] += 1
    flags = rec.get("flags")
    if isinstance(flags, list):
        facts.flags.update(str(x) for x in flags)


def _write_card(job: _Job, root: Path, facts: CardFacts) -> None:
    """README.md with the YAML and the provenance; a README.md batchcap did not write is left alone."""
    card = root / "README.md"
    try:
        existing = card.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = None
    except (OSError, UnicodeDecodeError):
        existing = ""
    if existing is not None and MARKER not in existing:
        job.report.card_kept = card
        return
    report = job.report
    facts.rows = report.written
    facts.errors_left_out = report.errors
    facts.flagged_left_out = report.flagged
    facts.converted = report.images.converted
    facts.kept_unreadable = report.images.kept_unreadable
    facts.source = job.source.location if job.source is not None else None
    upload = upload_command(job.options.repo, root, facts.format)
    replace_text(card, card_text(facts, read_manifest(job.journal), upload=upload))
    report.card = card
    report.outputs.append(card)


def _kohya(job: _Job) -> None:
    assert job.images is not None
    root = job.options.out or job.images
    ext, mode = job.options.ext, job.options.mode
    seen: set[str] = set()
    for item in job.images_in_order():
        caption = item.record["caption"]
        image = _place(job, item, root) if not job.in_place(root) else item.src
        if image is None:
            continue
        sidecar = image.with_name(image.stem + ext) if image.suffix else image.with_name(image.name + ext)
        key = str(sidecar)
        if sidecar.name == image.name or key in seen:
            job.report.conflicts += 1
            continue
        seen.add(key)
        text = _sidecar_text(sidecar, caption, mode)
        if text is None:
            job.report.kept += 1
        else:
            job.report.written += 1
            if not replace_text(sidecar, text):
                job.report.unchanged += 1
    if job.report.written > job.report.unchanged:
        sync_all()
    job.report.outputs.append(root)


def _sidecar_text(sidecar: Path, caption: str, mode: Mode) -> str | None:
    """The sidecar's new content, or None to leave it as it is. append/prepend never add a caption twice."""
    if mode == "overwrite":
        return caption
    try:
        existing = sidecar.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return caption
    except (OSError, UnicodeDecodeError):
        return None  # not ours to rewrite blind: kept, and counted as kept
    if mode == "keep":
        return None
    if not existing:
        return caption
    if mode == "append":
        return existing if existing.endswith(caption) else existing + SEPARATOR + caption
    return existing if existing.startswith(caption) else caption + SEPARATOR + existing


# ---------------------------------------------------------------------------------------------------------------
# Tables: csv, parquet, openai-batch.


def _csv(job: _Job) -> None:
    target = job.table_path("metadata.csv", ".csv")
    with atomic_text(target) as f:
        w = csv.writer(f, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled, fields quoted when needed
        w.writerow(["file_name", job.options.text_column])
        for path, caption in job.ok_records():
            w.writerow([path, caption])
            job.report.written += 1
    job.report.outputs.append(target)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install pyarrow (or use --format csv)") from None


def _parquet(job: _Job) -> None:
    """The images embedded as ``datasets``' Image feature stores them, in shards (``export.shards``), + the card."""
    out = job.options.out or job.journal.with_name(job.journal.stem + "-dataset")
    columns = text_columns(job.options)
    writer = ShardWriter(out, columns, shard_bytes=int(job.options.shard_mb * 1_000_000))
    facts = CardFacts("parquet", 0, ["data/train-*.parquet"], columns)
    counts = job.report.images
    try:
        for item in job.images_in_order():
            try:
                data = item.read()
            except OSError:  # gone since the listing
                job.report.missing += 1
                continue
            got = prepare_bytes(data, job.options.convert, counts)
            if got is None:
                continue
            out_bytes, mime = got
            name = item.name if out_bytes is data else converted_name(item.name, mime)
            writer.add(out_bytes, str(name), text_values(job.options, [item.record]))
            job.report.written += 1
            _note(facts, item.record)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    job.report.outputs += shards
    _write_card(job, out, facts)


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _request_id(path: str) -> str:
    return "batch_req_" + hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _openai_batch(job: _Job) -> None:
    """The line shapes of OpenAI Batch output and error files, ``custom_id`` = the image path."""
    out_path = job.table_path("batch_output.jsonl", ".batch_output.jsonl")
    err_path = job.table_path("batch_errors.jsonl", ".batch_errors.jsonl")
    skip = job.options.skip_flagged
    with atomic_bytes(out_path) as f:
        for rec in read_records(job.journal, job.sel.ok_items()):
            if skip and _flagged(rec):
                job.report.flagged += 1
                continue
            _write_line(f, _ok_line(rec))
            job.report.written += 1
    with atomic_bytes(err_path) as f:
        for rec in read_records(job.journal, job.sel.error_items()):
            _write_line(f, _error_line(rec))
    job.report.outputs += [out_path, err_path]


def _write_line(f: IO[bytes], obj: dict[str, Any]) -> None:
    f.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))


def _ok_line(rec: dict[str, Any]) -> dict[str, Any]:
    path = rec["path"]
    rid = _request_id(path)
    ts = rec.get("ts")
    return {
        "id": rid,
        "custom_id": path,
        "response": {
            "status_code": 200,
            "request_id": rec.get("request_id") if isinstance(rec.get("request_id"), str) else "",
            "body": {
                "id": "chatcmpl-" + rid.removeprefix("batch_req_"),
                "object": "chat.completion",
                "created": int(ts) if isinstance(ts, int | float) else 0,
                "model": rec.get("target") if isinstance(rec.get("target"), str) else "",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": rec["caption"], "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": None,
            },
        },
        "error": None,
    }


def _error_line(rec: dict[str, Any]) -> dict[str, Any]:
    raw = rec.get("error")
    err: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = err.get("type") if isinstance(err.get("type"), str) else "error"
    message = err.get("message") if isinstance(err.get("message"), str) else ""
    status = err.get("http_status")
    response = None
    if isinstance(status, int):
        response = {
            "status_code": status,
            "request_id": rec.get("request_id") if isinstance(rec.get("request_id"), str) else "",
            "body": {"error": {"message": message, "type": kind, "param": None, "code": None}},
        }
    return {
        "id": _request_id(rec["path"]),
        "custom_id": rec["path"],
        "response": response,
        "error": None if response is not None else {"code": kind, "message": message},
    }


WRITERS: dict[Format, Callable[[_Job], None]] = {
    "imagefolder": _imagefolder,
    "kohya": _kohya,
    "csv": _csv,
    "parquet": _parquet,
    "openai-batch": _openai_batch,
}
