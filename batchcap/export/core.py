"""``export(journal, options)``: the answers of a run in the layout a trainer or a loader reads.

One line (row, sidecar) per image with an ok answer; a table holds one column per task (``export.columns``: a
run without tasks keeps its one ``text`` column), a kohya sidecar the task picked (``task``) or every task, one
per line (``multiline``). Error records are left out and counted (the ``openai-batch`` format
writes them to its own errors file). Each format is one writer function in :data:`WRITERS`; they share the
job (``export.job``: the selection pass, the input, the path checks) and the atomic file helpers. The dataset
folders (imagefolder, parquet) are in ``export.dataset``.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from batchcap.errors import ConfigError, UsageError
from batchcap.export.columns import answer_text
from batchcap.export.dataset import imagefolder, parquet, place, upload_command
from batchcap.export.files import atomic_bytes, atomic_text, sync_all
from batchcap.export.job import (
    DATASET_FORMATS,
    FORMATS,
    MODES,
    ExportOptions,
    ExportReport,
    Format,
    Job,
    Mode,
    flagged,
    image_column,
    input_dir_from_manifest,
    input_from_manifest,
    table_path,
)
from batchcap.export.select import read_records, select
from batchcap.export.shards import old_shards
from batchcap.export.taken import taken_images
from batchcap.journal import manifest_path
from batchcap.journal.codec import record_task
from batchcap.journal.owned import note_written, refuse_foreign
from batchcap.models import DEFAULT_TASK
from batchcap.source.datasets import Source, open_source
from batchcap.source.sidecars import sidecar_name, sidecar_text, write_sidecar

__all__ = [
    "FORMATS",
    "MODES",
    "ExportOptions",
    "ExportReport",
    "Format",
    "Mode",
    "export",
    "input_dir_from_manifest",
    "manifest_path",
]



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
            source = open_source(where, image_column=image_column(journal, options))
        except ConfigError as exc:
            raise UsageError(f"{exc}; pass --images INPUT") from None
        images = source.root
        if images is None and options.format == "kohya":
            raise UsageError(f"--format kohya writes captions beside image files, and {source.location} is a "
                             f"{source.kind} source; use --format imagefolder or parquet")
    sel = select(journal)
    _check_tasks(options, sel.tasks)
    report = ExportReport(
        refused=len(sel.refused), bad_lines=sel.bad_lines, first_bad_line=sel.first_bad_line, errors=len(sel.errors),
        tasks=list(sel.tasks),
    )
    job = Job(journal, options, sel, images, report, source)
    refuse_foreign([*_replaced(journal, options, images), *_taken(job)], overwrite=options.overwrite)
    writer(job)
    job.save_ledgers()
    note_written(report.outputs)
    if options.format in DATASET_FORMATS and report.card is not None:
        report.upload = upload_command(options.repo, report.card.parent, options.format)
    return report


def _replaced(journal: Path, options: ExportOptions, images: Path | None) -> list[Path]:
    """The files this export would replace if they are there (kohya's sidecars and the card follow their own
    rules: ``--mode`` and the card's marker)."""
    out, fmt = options.out, options.format
    if fmt == "imagefolder":
        root = out or images
        return [] if root is None else [root / "metadata.jsonl"]
    if fmt == "csv":
        return [table_path(journal, out, "metadata.csv", ".csv")]
    if fmt == "openai-batch":
        return [table_path(journal, out, "batch_output.jsonl", ".batch_output.jsonl"),
                table_path(journal, out, "batch_errors.jsonl", ".batch_errors.jsonl")]
    if fmt == "parquet":
        return old_shards(out or journal.with_name(journal.stem + "-dataset"))
    return []


def _taken(job: Job) -> list[Path]:
    """The files in ``--out`` this export would put an image over and batchcap did not write (``export.taken``)."""
    out = job.options.out
    if out is None or job.options.format not in ("imagefolder", "kohya") or job.in_place(out):
        return []
    return taken_images(out, [path for path, _ in job.sel.ok_images()], images=job.images,
                        convert=job.options.convert, ledger=job.ledger(out))


def _check_tasks(options: ExportOptions, tasks: list[str]) -> None:
    """kohya needs one task to write, or --multiline; --task must name one the journal holds."""
    if options.task is not None and options.task not in tasks:
        raise UsageError(f"--task {options.task}: the journal holds no answers of that task (tasks: "
                         f"{', '.join(tasks) or 'none'})")
    if options.format == "kohya" and len(tasks) > 1 and options.task is None and not options.multiline:
        raise UsageError(f"the journal holds {len(tasks)} tasks ({', '.join(tasks)}); pick the one the sidecars "
                         "hold with --task NAME, or write them all, one per line, with --multiline")


def _kohya(job: Job) -> None:
    assert job.images is not None
    root = job.options.out or job.images
    ext, mode = job.options.ext, job.options.mode
    tasks = job.sel.tasks if job.options.multiline else [job.options.task or (job.sel.tasks or [DEFAULT_TASK])[0]]
    seen: set[str] = set()
    for item in job.images_in_order(tasks):
        caption = "\n".join(answer_text(item.answers[t]) for t in tasks if t in item.answers)
        image = place(job, item, root) if not job.in_place(root) else item.src
        if image is None:
            continue
        sidecar = sidecar_name(image, ext)
        if sidecar is None or str(sidecar) in seen:
            job.report.conflicts += 1
            continue
        seen.add(str(sidecar))
        text = sidecar_text(sidecar, caption, mode)
        if text is None:
            job.report.kept += 1
        else:
            job.report.written += 1
            if not write_sidecar(sidecar, text):
                job.report.unchanged += 1
    if job.report.written > job.report.unchanged:
        sync_all()
    job.report.outputs.append(root)


# ---------------------------------------------------------------------------------------------------------------
# Tables: csv, parquet, openai-batch.


def _csv(job: Job) -> None:
    target = job.table_path("metadata.csv", ".csv")
    with atomic_text(target) as f:
        w = csv.writer(f, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled, fields quoted when needed
        w.writerow(["file_name", *job.text_columns()])
        for path, answers in job.ok_answers():
            w.writerow([path, *job.text_values(answers)])
            job.report.written += 1
    job.report.outputs.append(target)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install pyarrow (or use --format csv)") from None


def _custom_id(rec: dict[str, Any]) -> str:
    """The image path; ``PATH#TASK`` for tasks other than ``caption`` (one line per answer)."""
    task = record_task(rec)
    return rec["path"] if task == DEFAULT_TASK else f"{rec['path']}#{task}"


def _request_id(path: str) -> str:
    return "batch_req_" + hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _openai_batch(job: Job) -> None:
    """The line shapes of OpenAI Batch output and error files, ``custom_id`` = the image path (``PATH#TASK`` for
    tasks other than ``caption``)."""
    out_path = job.table_path("batch_output.jsonl", ".batch_output.jsonl")
    err_path = job.table_path("batch_errors.jsonl", ".batch_errors.jsonl")
    skip = job.options.skip_flagged
    with atomic_bytes(out_path) as f:
        for rec in read_records(job.journal, job.sel.ok_items()):
            if skip and flagged(rec):
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


WRITERS: dict[Format, Callable[[Job], None]] = {
    "imagefolder": imagefolder,
    "kohya": _kohya,
    "csv": _csv,
    "parquet": parquet,
    "openai-batch": _openai_batch,
}
