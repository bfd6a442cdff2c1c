"""``batchcap export RESULTS.jsonl --format FORMAT [--out DIR]``: flags, one-line messages, exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from batchcap.errors import ConfigError
from batchcap.export.convert import CONVERT_CHOICES
from batchcap.export.core import FORMATS, ExportOptions, ExportReport, Format, export
from batchcap.export.shards import DEFAULT_SHARD_MB
from batchcap.redact import shown
from batchcap.source.settings import parse_input
from batchcap.source.sidecars import MODES, Mode, sidecar_ext_problem
from batchcap.words import plural

from .argtypes import add_overwrite_flag
from .held import add_wait_argument, held_note, still_written

__all__ = ["EXIT_CODES_HELP", "add_arguments", "main", "summary"]

EXIT_CODES_HELP = """\
exit codes:
  0  exported (images whose latest record is an error are left out and counted: that is expected)
  1  exported, but something was left out that needs a look: lines that are not records, paths that
     would land outside the folder, images missing from the input, images no decoder reads, sidecar
     name clashes; or a run is still writing the JSONL, so only what it held then was exported (see
     --wait)
  2  the command line or a path is wrong (bad flags, no such JSONL, no input known, an input that
     cannot be read, parquet without pyarrow)
  3  aborted: the JSONL cannot be read, or an output cannot be written
"""

_WHERE = """\
where files go:
  imagefolder   DIR/metadata.jsonl + the images (hard links, else copies) + DIR/README.md; no --out:
                metadata.jsonl at the input folder's root (a dataset input needs --out)
  kohya         NAME.txt (--ext) beside each image; with --out the images are linked into DIR first
  csv           DIR/metadata.csv, else RESULTS.csv beside the JSONL
  parquet       DIR/data/train-00000-of-0000N.parquet with the images embedded (datasets' Image
                feature) + DIR/README.md; no --out: RESULTS-dataset/ beside the JSONL (needs pyarrow)
  openai-batch  DIR/batch_output.jsonl + DIR/batch_errors.jsonl, else RESULTS.batch_output.jsonl and
                RESULTS.batch_errors.jsonl

imagefolder and parquet with --out are dataset folders: README.md is a dataset card (YAML that
datasets and the Hub read; where the captions came from), and the export prints the `hf upload`
command that publishes the folder. Images that datasets/Pillow cannot decode without a plugin (HEIC,
AVIF) are converted (--convert).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``export`` flags on ``parser`` (a subparser of the main CLI, or a test's own parser)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = "Write the captions of a run in the layout a trainer or a loader reads."
    parser.epilog = _WHERE + "\n" + EXIT_CODES_HELP
    parser.add_argument("results", type=Path, metavar="RESULTS.jsonl", help="the journal of a batchcap run")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output layout")
    parser.add_argument("--out", type=Path, help="output folder (default: see 'where files go')")
    parser.add_argument("--images", metavar="INPUT",
                        help="what was captioned: a folder, a parquet or WebDataset dataset, a URL (default: "
                             "config.input_dir of the run manifest beside the JSONL)")
    parser.add_argument("--text-column", default="text",
                        help="one task (caption): the name of its column; several tasks (one column each, named "
                             "after it): the task whose answers go in the text column a trainer reads (default: "
                             "text)")
    parser.add_argument("--task", metavar="NAME",
                        help="kohya: the task whose answers the sidecars hold (needed when the run had several)")
    parser.add_argument("--multiline", action="store_true",
                        help="kohya: every task's answer in one sidecar, one per line (kohya's multi-line captions)")
    parser.add_argument("--ext", help="kohya sidecar extension (default: .txt)")
    parser.add_argument("--mode", choices=MODES,
                        help="kohya, when a sidecar exists: keep it (default), overwrite it, or append/prepend "
                             "the caption (joined by ', '; never added twice)")
    parser.add_argument("--skip-flagged", action="store_true",
                        help="leave out records that carry quality flags")
    parser.add_argument("--convert", choices=CONVERT_CHOICES, default="auto",
                        help="imagefolder, parquet, kohya --out: auto = convert only what datasets/Pillow cannot "
                             "decode without a plugin (HEIC, AVIF) to JPEG (PNG where transparent); jpeg / png = "
                             "every image to that format; keep = every file as it is (default: auto)")
    parser.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_MB, metavar="MB",
                        help=f"parquet: images per shard file, in MB (default: {DEFAULT_SHARD_MB}, the Hub's advice)")
    parser.add_argument("--repo", metavar="ORG/NAME",
                        help="the Hub dataset repository the printed `hf upload` command publishes to")
    parser.add_argument("--image-column", metavar="NAME",
                        help="a parquet input's image column (default: the one the run used)")
    add_wait_argument(parser)
    add_overwrite_flag(parser)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the export the flags describe; one line per outcome on stderr; the exit code as documented."""
    fmt = cast(Format, ns.format)
    if fmt != "kohya" and (ns.ext is not None or ns.mode is not None or ns.task is not None or ns.multiline):
        raise ConfigError("--ext, --mode, --task and --multiline apply to --format kohya only (tables hold one "
                          "column per task)")
    if ns.task is not None and ns.multiline:
        raise ConfigError("give --task NAME (one task per sidecar) or --multiline (every task), not both")
    ext = ns.ext if ns.ext is not None else ".txt"
    if (problem := sidecar_ext_problem(ext, flag="--ext")) is not None:
        raise ConfigError(problem)
    column = ns.text_column
    if not column or column == "file_name":
        raise ConfigError(f"--text-column must be a name other than file_name (got {column!r})")
    if fmt not in ("imagefolder", "parquet", "kohya") and ns.convert != "auto":
        raise ConfigError("--convert applies to --format imagefolder, parquet and kohya")
    if fmt != "parquet" and ns.shard_mb != DEFAULT_SHARD_MB:
        raise ConfigError("--shard-mb applies to --format parquet only")
    options = ExportOptions(
        format=fmt, out=ns.out, images=parse_input(ns.images) if ns.images is not None else None,
        text_column=column, ext=ext, mode=cast(Mode, ns.mode or "keep"), skip_flagged=bool(ns.skip_flagged),
        convert=ns.convert, shard_mb=ns.shard_mb, repo=ns.repo, image_column=ns.image_column,
        task=ns.task, multiline=bool(ns.multiline), overwrite=bool(ns.overwrite),
    )
    if not ns.results.is_file():
        raise ConfigError(f"cannot read {shown(ns.results)}: no such file")
    held = still_written(ns.results, ns.wait, _say)
    try:
        report = export(ns.results, options)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"batchcap export: cannot read or write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    for line in summary(report, fmt):
        _say(line)
    if held:
        images = report.written + report.errors + report.flagged
        _say(held_note(ns.results, f"{plural(images, 'image')} ({plural(report.written, 'caption')})", ns.wait))
    return 1 if report.left_out or held else 0


def _say(line: str) -> None:
    print(f"batchcap export: {line}", file=sys.stderr)


def summary(report: ExportReport, fmt: str) -> list[str]:
    """What the export did, as short lines: the count, where, and each kind of thing left out."""
    where = ", ".join(str(p) for p in report.outputs)
    tasks = f" ({len(report.tasks)} tasks: {', '.join(report.tasks)})" if len(report.tasks) > 1 else ""
    lines = [f"{plural(report.written, 'caption')} exported ({fmt}) to {where}{tasks}"]
    extra = []
    if report.kept:
        extra.append(f"{plural(report.kept, 'existing sidecar')} kept (--mode overwrite/append/prepend to change them)")
    if report.unchanged:
        extra.append(f"{plural(report.unchanged, 'file')} already up to date (not rewritten)")
    if report.linked or report.copied:
        extra.append(f"images: {report.linked} hard-linked, {report.copied} copied")
    if report.errors:
        extra.append(f"{plural(report.errors, 'image')} with an error record left out"
                     + (" (in the errors file)" if fmt == "openai-batch" else ""))
    if report.flagged:
        extra.append(f"{plural(report.flagged, 'flagged image')} left out (--skip-flagged)")
    lines += extra
    if report.bad_lines:
        lines.append(f"{plural(report.bad_lines, 'line')} skipped: not "
                     f"{'a batchcap record' if report.bad_lines == 1 else 'batchcap records'} "
                     f"(first: line {report.first_bad_line})")
    if report.refused:
        lines.append(f"{plural(report.refused, 'path')} refused: outside the folder (../, absolute, NUL)")
    if report.missing:
        lines.append(f"{plural(report.missing, 'image')} missing from the input folder left out")
    if report.conflicts:
        lines.append(f"{plural(report.conflicts, 'sidecar')} left out: two images share one name, or the name "
                     "is the image's")
    images = report.images
    if images.converted:
        kinds = ", ".join(f"{n} {k.upper()}" for k, n in images.converted.most_common())
        lines.append(f"{plural(sum(images.converted.values()), 'image')} converted so that every reader decodes them "
                     f"({kinds}; --convert keep ships them as they are)")
    if images.kept_unreadable:
        kinds = ", ".join(f"{n} {k.upper()}" for k, n in images.kept_unreadable.most_common())
        lines.append(f"{plural(sum(images.kept_unreadable.values()), 'image')} kept as they are that datasets/Pillow cannot "
                     f"decode without a plugin ({kinds}; --convert auto converts them)")
    if images.undecodable:
        lines.append(f"{plural(images.undecodable, 'image')} left out: they cannot be decoded to convert them")
    if report.card is not None:
        lines.append(f"dataset card: {report.card}")
    if report.card_kept is not None:
        lines.append(f"{report.card_kept} was not written by batchcap: kept as it is (no dataset card written)")
    if report.upload is not None:
        lines.append(f"publish it with: {report.upload}")
    return lines
