"""One export's options, its report, and the job the format writers share (the selection, the input, the guards).

``Job.images_in_order`` is the one way a writer gets images: a folder's files in path order, a dataset's
images in its own order (``export.items``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from batchcap.errors import UsageError
from batchcap.export.columns import Column, cell_text, row, table_columns
from batchcap.export.convert import CONVERT_CHOICES, Convert
from batchcap.export.items import ExportImage, ImageCounts, dataset_images, folder_image
from batchcap.export.paths import Inside
from batchcap.export.select import Selection, read_records
from batchcap.export.shards import DEFAULT_SHARD_MB
from batchcap.journal.codec import record_task
from batchcap.journal.meta import input_dir_from_manifest, input_from_manifest, read_manifest
from batchcap.journal.owned import Ledger
from batchcap.source.datasets import Source
from batchcap.source.sidecars import MODES, Mode

__all__ = [
    "FORMATS",
    "MODES",
    "ExportOptions",
    "ExportReport",
    "Format",
    "Job",
    "Mode",
    "flagged",
    "image_column",
    "input_dir_from_manifest",
    "input_from_manifest",
    "read_manifest",
    "same_folder",
    "table_path",
]

Format = Literal["imagefolder", "kohya", "csv", "parquet", "openai-batch"]
FORMATS: tuple[Format, ...] = ("imagefolder", "kohya", "csv", "parquet", "openai-batch")
#: The formats that are a dataset folder: they get a README.md dataset card (with --out).
DATASET_FORMATS = ("imagefolder", "parquet")
#: Seconds between saves of an output folder's ledger while images go in.
LEDGER_SAVE_S = 5.0
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
    task: str | None = None  #: kohya: the task whose answers the sidecars hold (needed with several tasks)
    multiline: bool = False  #: kohya: every task's answer, one per line (kohya's multi-line caption file)
    overwrite: bool = False  #: replace output files batchcap did not write (``journal.owned``)

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
    tasks: list[str] = field(default_factory=list)  #: the tasks the journal holds (issue 16)

    @property
    def left_out(self) -> int:
        return self.refused + self.bad_lines + self.missing + self.conflicts + self.images.undecodable


def image_column(journal: Path, options: ExportOptions) -> str | None:
    """The parquet input's image column: ``--image-column``, else the one the run read (its manifest's source,
    or the config of a merged manifest)."""
    if options.image_column is not None:
        return options.image_column
    doc = read_manifest(journal) or {}
    for where in (doc.get("source"), doc.get("config")):
        column = where.get("image_column") if isinstance(where, dict) else None
        if isinstance(column, str):
            return column
    return None


@dataclass(slots=True)
class Job:
    journal: Path
    options: ExportOptions
    sel: Selection
    images: Path | None  #: the input folder of a folder source (images are files there)
    report: ExportReport
    source: Source | None = None  #: the run's input, for the formats that hold images
    _guards: dict[Path, Inside] = field(default_factory=dict)
    _same: dict[Path, bool] = field(default_factory=dict)
    _ledgers: dict[Path, Ledger] = field(default_factory=dict)
    _saved: float = field(default_factory=time.monotonic)

    def ledger(self, root: Path) -> Ledger:
        """The ledger of an output folder, read once per export (``export.taken`` checks it, images go in it)."""
        ledger = self._ledgers.get(root)
        if ledger is None:
            ledger = self._ledgers[root] = Ledger(root)
        return ledger

    def wrote_image(self, root: Path, dest: Path) -> None:
        """Note an image put into ``root`` in its ledger (``export.taken``: the next export replaces it freely).
        Saved every few seconds too, so an export killed half-way does not leave its converted images unowned
        (its links and copies are recognised without the ledger)."""
        ledger = self.ledger(root)
        ledger.wrote(dest)
        now = time.monotonic()
        if now - self._saved >= LEDGER_SAVE_S:
            ledger.save()
            self._saved = now

    def save_ledgers(self) -> None:
        for ledger in self._ledgers.values():
            ledger.save()

    def in_place(self, root: Path) -> bool:
        """True when ``root`` is the input folder itself (nothing to link); resolved once per root."""
        same = self._same.get(root)
        if same is None:
            same = self._same[root] = self.images is not None and same_folder(root, self.images)
        return same

    def dest(self, root: Path) -> Inside:
        guard = self._guards.get(root)
        if guard is None:
            guard = self._guards[root] = Inside(root)
        return guard

    def ok_answers(self, tasks: list[str] | None = None) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
        """(path, task -> record) of every image with an ok answer (of ``tasks``, default all), in path order;
        flagged answers left out on request (an image with none left is left out)."""
        skip = self.options.skip_flagged
        wanted = None if tasks is None else set(tasks)
        for path, items in self.sel.ok_images():
            chosen = [(task, offset) for task, offset in items if wanted is None or task in wanted]
            answers: dict[str, dict[str, Any]] = {}
            for rec in read_records(self.journal, chosen):
                if skip and flagged(rec):
                    self.report.flagged += 1
                    continue
                answers[record_task(rec)] = rec
            if answers:
                yield path, answers

    def columns(self) -> list[Column]:
        """The table's columns after ``file_name``: one per task (``export.columns``)."""
        return table_columns(self.sel.tasks, self.sel.fields, text_column=self.options.text_column)

    def text_columns(self) -> list[str]:
        return [c.name for c in self.columns()]

    def text_values(self, answers: dict[str, dict[str, Any]]) -> list[str | None]:
        """One image's answers -> its cell in each of ``text_columns`` (text; JSON for a field's list)."""
        return [cell_text(v) for v in row(self.columns(), answers).values()]

    def text_row(self, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """One image's answers by column, JSON values kept (imagefolder's metadata.jsonl)."""
        return row(self.columns(), answers)

    def images_in_order(self, tasks: list[str] | None = None) -> Iterator[ExportImage]:
        """The images to export with their answers (of ``tasks``, default all): a folder's in path order, a
        dataset's in its own order."""
        counts = self.report.images
        if self.images is None:
            assert self.source is not None
            yield from dataset_images(self.source, self.journal, self.sel, counts,
                                      skip_flagged=self.options.skip_flagged, tasks=tasks)
            self.report.missing += counts.missing
            self.report.flagged += counts.flagged
            return
        guard = self.dest(self.images)
        for _path, answers in self.ok_answers(tasks):
            got = folder_image(guard, answers)
            if got is None:
                self.report.refused += 1
            elif isinstance(got, Path):
                self.report.missing += 1
            else:
                yield got

    def table_path(self, name: str, suffix: str) -> Path:
        """``DIR/name`` with --out, else ``results<suffix>`` beside the journal."""
        return table_path(self.journal, self.options.out, name, suffix)


def table_path(journal: Path, out: Path | None, name: str, suffix: str) -> Path:
    """``out/name``, else ``results<suffix>`` beside the journal."""
    return out / name if out is not None else journal.with_name(journal.stem + suffix)


def flagged(rec: dict[str, Any]) -> bool:
    flags = rec.get("flags")
    return isinstance(flags, list) and len(flags) > 0


def same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
