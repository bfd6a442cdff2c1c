"""``export(journal, options)``: the answers of a run in the layout a trainer or a loader reads.

One line (row, sidecar) per image with an ok answer, in path order; a table holds one column per task
(``columns``: a run without tasks keeps its one ``text`` column), a kohya sidecar the task picked (``task``) or
every task, one per line (``multiline``). Error records are left out and counted (the ``openai-batch`` format
writes them to its own errors file). Each format is one writer function in :data:`WRITERS`; they share the
selection pass, the path checks and the atomic file helpers.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import orjson

from batchcap.errors import UsageError
from batchcap.export.columns import Column, answer_text, cell_text, row, table_columns
from batchcap.export.files import atomic_bytes, atomic_text, place_image, replace_text, sync_all
from batchcap.export.paths import Inside, safe_relpath
from batchcap.export.select import Selection, read_records, select
from batchcap.journal import manifest_path
from batchcap.journal.codec import record_task
from batchcap.models import DEFAULT_TASK

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


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to export where. ``out`` None: the format's default place (see the command's help)."""

    format: Format
    out: Path | None = None
    images: Path | None = None  #: the input folder; None: from the run manifest beside the journal
    text_column: str = "text"
    ext: str = ".txt"
    mode: Mode = "keep"
    skip_flagged: bool = False
    task: str | None = None  #: kohya: the task whose answers the sidecars hold (needed with several tasks)
    multiline: bool = False  #: kohya: every task's answer, one per line (kohya's multi-line caption file)


@dataclass(slots=True)
class ExportReport:
    """What an export did; ``left_out`` items are the ones worth a look (exit 1 from the command)."""

    outputs: list[Path] = field(default_factory=list)
    written: int = 0  #: images exported (their line or sidecar holds their answers now)
    errors: int = 0  #: answers whose latest record is an error (left out, or in the errors file)
    flagged: int = 0  #: ok answers left out by --skip-flagged
    tasks: list[str] = field(default_factory=list)  #: the tasks the journal holds
    refused: int = 0  #: paths that would land outside the folder
    bad_lines: int = 0
    first_bad_line: int | None = None
    missing: int = 0  #: ok images whose file is gone from the input folder
    conflicts: int = 0  #: two images mapping to one sidecar, or a sidecar that would be the image itself
    kept: int = 0  #: kohya sidecars already there and kept (--mode keep)
    unchanged: int = 0  #: files already up to date
    linked: int = 0
    copied: int = 0

    @property
    def left_out(self) -> int:
        return self.refused + self.bad_lines + self.missing + self.conflicts


def input_dir_from_manifest(journal: Path) -> Path | None:
    """``config.input_dir`` of the run manifest beside ``journal``; None when absent or unreadable."""
    try:
        doc = orjson.loads(manifest_path(journal).read_bytes())
        value = doc["config"]["input_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    folder = Path(value)
    if not folder.is_absolute() and not folder.is_dir() and (journal.parent / folder).is_dir():
        folder = journal.parent / folder
    return folder


def export(journal: Path, options: ExportOptions) -> ExportReport:
    """Run one export. Raises ``OSError`` (unreadable journal, unwritable output), ``UsageError`` (no input
    folder where one is needed, parquet without pyarrow)."""
    writer = WRITERS[options.format]
    needs_images = options.format in ("imagefolder", "kohya")
    images = options.images
    if images is None and needs_images:
        images = input_dir_from_manifest(journal)
        if images is None:
            raise UsageError(
                f"no run manifest with the input folder beside {journal} ({manifest_path(journal).name}); "
                "pass --images DIR"
            )
    if images is not None and needs_images and not images.is_dir():
        raise UsageError(f"the input folder {images} is not a folder; pass --images DIR")
    if options.format == "parquet":
        _require_pyarrow()
    sel = select(journal)
    _check_tasks(options, sel.tasks)
    report = ExportReport(
        refused=len(sel.refused), bad_lines=sel.bad_lines, first_bad_line=sel.first_bad_line, errors=len(sel.errors),
        tasks=list(sel.tasks),
    )
    writer(_Job(journal, options, sel, images, report))
    return report


def _check_tasks(options: ExportOptions, tasks: list[str]) -> None:
    """kohya needs one task to write, or --multiline; --task must name one the journal holds."""
    if options.task is not None and options.task not in tasks:
        raise UsageError(f"--task {options.task}: the journal holds no answers of that task (tasks: "
                         f"{', '.join(tasks) or 'none'})")
    if options.format == "kohya" and len(tasks) > 1 and options.task is None and not options.multiline:
        raise UsageError(f"the journal holds {len(tasks)} tasks ({', '.join(tasks)}); pick the one the sidecars "
                         "hold with --task NAME, or write them all, one per line, with --multiline")


@dataclass(slots=True)
class _Job:
    journal: Path
    options: ExportOptions
    sel: Selection
    images: Path | None
    report: ExportReport
    _guards: dict[Path, Inside] = field(default_factory=dict)
    _same: dict[Path, bool] = field(default_factory=dict)

    def in_place(self, root: Path) -> bool:
        """True when ``root`` is the input folder itself (nothing to link); resolved once per root."""
        same = self._same.get(root)
        if same is None:
            assert self.images is not None
            same = self._same[root] = _same_folder(root, self.images)
        return same

    def source(self, rel: PurePosixPath) -> Path | None:
        """The image in the input folder, unless a folder link leads it out."""
        assert self.images is not None
        return self.dest(self.images)(rel)

    def dest(self, root: Path) -> Inside:
        guard = self._guards.get(root)
        if guard is None:
            guard = self._guards[root] = Inside(root)
        return guard

    def ok_images(self, tasks: list[str] | None = None) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
        """(path, task -> record) of every image with an ok answer (of ``tasks``, default all), in path order;
        flagged answers left out on request (an image with none left is left out)."""
        skip = self.options.skip_flagged
        wanted = None if tasks is None else set(tasks)
        for path, items in self.sel.ok_images():
            chosen = [(task, offset) for task, offset in items if wanted is None or task in wanted]
            answers: dict[str, dict[str, Any]] = {}
            for rec in read_records(self.journal, chosen):
                if skip and _flagged(rec):
                    self.report.flagged += 1
                    continue
                answers[record_task(rec)] = rec
            if answers:
                yield path, answers

    def columns(self) -> list[Column]:
        return table_columns(self.sel.tasks, self.sel.fields, text_column=self.options.text_column)

    def table_path(self, name: str, suffix: str) -> Path:
        """``DIR/name`` with --out, else ``results<suffix>`` beside the journal."""
        out = self.options.out
        return out / name if out is not None else self.journal.with_name(self.journal.stem + suffix)


def _flagged(rec: dict[str, Any]) -> bool:
    flags = rec.get("flags")
    return isinstance(flags, list) and len(flags) > 0


# ---------------------------------------------------------------------------------------------------------------
# imagefolder and kohya: files beside images.


def _materialize(job: _Job, path: str, dest_root: Path) -> Path | None:
    """Link or copy the image into ``dest_root`` (when it is not the input folder). None: left out (counted)."""
    assert job.images is not None
    rel = safe_relpath(path)
    assert rel is not None  # select() refused the others
    src = job.source(rel)
    if src is None or not src.is_file():
        if src is None:
            job.report.refused += 1
        else:
            job.report.missing += 1
        return None
    if job.in_place(dest_root):
        return src
    dest = job.dest(dest_root)(rel)
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


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _imagefolder(job: _Job) -> None:
    assert job.images is not None
    root = job.options.out or job.images
    root.mkdir(parents=True, exist_ok=True)
    columns = job.columns()
    target = root / "metadata.jsonl"
    with atomic_bytes(target) as f:
        for path, answers in job.ok_images():
            if _materialize(job, path, root) is None:
                continue
            f.write(orjson.dumps({"file_name": str(safe_relpath(path)), **row(columns, answers)},
                                 option=orjson.OPT_APPEND_NEWLINE))
            job.report.written += 1
    job.report.outputs.append(target)


def _kohya(job: _Job) -> None:
    assert job.images is not None
    root = job.options.out or job.images
    ext, mode = job.options.ext, job.options.mode
    tasks = job.sel.tasks if job.options.multiline else [job.options.task or (job.sel.tasks or [DEFAULT_TASK])[0]]
    seen: set[str] = set()
    for path, answers in job.ok_images(tasks):
        caption = "\n".join(answer_text(answers[t]) for t in tasks if t in answers)
        image = _materialize(job, path, root)
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
        columns = job.columns()
        w.writerow(["file_name", *(c.name for c in columns)])
        for path, answers in job.ok_images():
            w.writerow([path, *(cell_text(v) for v in row(columns, answers).values())])
            job.report.written += 1
    job.report.outputs.append(target)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install pyarrow (or use --format csv)") from None


def _parquet(job: _Job) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = job.columns()
    schema = pa.schema([("file_name", pa.string()), *((c.name, pa.string()) for c in columns)])
    target = job.table_path("metadata.parquet", ".parquet")
    with atomic_bytes(target) as f:
        writer = pq.ParquetWriter(f, schema)
        table: list[list[str | None]] = [[] for _ in range(len(columns) + 1)]
        for path, answers in job.ok_images():
            table[0].append(path)
            for i, value in enumerate(row(columns, answers).values(), 1):
                table[i].append(cell_text(value))
            job.report.written += 1
            if len(table[0]) >= _PARQUET_BATCH:
                writer.write_table(pa.table(table, schema=schema))
                table = [[] for _ in range(len(columns) + 1)]
        writer.write_table(pa.table(table, schema=schema))
        writer.close()
    job.report.outputs.append(target)


def _custom_id(rec: dict[str, Any]) -> str:
    """The image path; ``PATH#TASK`` for tasks other than ``caption`` (one line per answer)."""
    task = record_task(rec)
    return rec["path"] if task == DEFAULT_TASK else f"{rec['path']}#{task}"


def _request_id(custom_id: str) -> str:
    return "batch_req_" + hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _openai_batch(job: _Job) -> None:
    """The line shapes of OpenAI Batch output and error files, ``custom_id`` = the image path (``PATH#TASK`` for
    tasks other than ``caption``)."""
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
    path = _custom_id(rec)
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
        "id": _request_id(_custom_id(rec)),
        "custom_id": _custom_id(rec),
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
