"""``batchcap report RESULTS.jsonl --out SITE/``: flags, one-line messages, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from batchcap.errors import ConfigError
from batchcap.redact import shown
from batchcap.site.build import SiteOptions, build_site
from batchcap.words import plural

from .argtypes import add_overwrite_flag, number
from .held import add_wait_argument, held_note, still_written

__all__ = ["EXIT_CODES_HELP", "add_arguments", "main"]

EXIT_CODES_HELP = """\
exit codes:
  0  site written (records with errors are part of it: that is what it is for)
  1  site written, but lines that are not records or paths that would leave the input folder were skipped;
     or a run is still writing the JSONL, so the site shows what it held then (see --wait)
  2  the command line or a path is wrong (bad flags, no such JSONL)
  3  aborted: the JSONL cannot be read, or the site cannot be written
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` flags on ``parser`` (a subparser of the main CLI, or a test's own parser)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("Write a static site that shows a run: thumbnails, captions, errors, search, numbers. "
                          "It opens from the disk (file://) and works as a Static Hugging Face Space.")
    parser.epilog = EXIT_CODES_HELP
    parser.add_argument("results", type=Path, metavar="RESULTS.jsonl", help="the journal of a batchcap run")
    parser.add_argument("--out", type=Path, required=True, help="site folder (created; thumbnails are reused)")
    parser.add_argument("--images", type=Path,
                        help="the captioned folder, for thumbnails (default: config.input_dir of the run manifest)")
    parser.add_argument("--title", help="page and Space title (default: batchcap: RESULTS.jsonl)")
    parser.add_argument("--jobs", type=number(int, 1), default=min(4, os.cpu_count() or 1),
                        help="threads making thumbnails (default: CPUs, at most 4)")
    add_wait_argument(parser)
    add_overwrite_flag(parser)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """Build the site; one line per outcome on stderr; the exit code as documented."""
    err = sys.stderr
    if not ns.results.is_file():
        raise ConfigError(f"cannot read {shown(ns.results)}: no such file")
    if ns.images is not None and not ns.images.is_dir():
        raise ConfigError(f"--images {shown(ns.images)} is not a folder")
    held = still_written(ns.results, ns.wait, _say)
    try:
        report = build_site(ns.results, SiteOptions(out=ns.out, images=ns.images, title=ns.title, jobs=ns.jobs,
                                                        overwrite=bool(ns.overwrite)))
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"batchcap report: cannot read or write{where}: {exc.strerror or exc}", file=err)
        return 3
    t = report.thumbs
    print(f"batchcap report: {plural(report.records, 'record')} ({report.ok} ok, "
          f"{plural(report.errors, 'error')}) in {report.seconds:.1f} s; open {report.index.resolve().as_uri()}", file=err)
    if report.images is None:
        print("batchcap report: no input folder (no run manifest beside the JSONL): no thumbnails; "
              "pass --images DIR", file=err)
    else:
        print(f"batchcap report: thumbnails: {t.made} made, {t.reused} up to date"
              + (f", {plural(t.missing, 'image')} missing" if t.missing else "")
              + (f", {t.failed} unreadable" if t.failed else ""), file=err)
    if report.bad_lines:
        n = report.bad_lines
        print(f"batchcap report: {plural(n, 'line')} skipped: not {'a batchcap record' if n == 1 else 'batchcap records'}"
              f" (first: line {report.first_bad_line})", file=err)
    if report.refused:
        print(f"batchcap report: {plural(report.refused, 'path')} refused: outside the input folder "
              "(../, absolute, NUL)", file=err)
    if held:
        _say(held_note(ns.results, plural(report.records, "image"), ns.wait))
    return 1 if report.bad_lines or report.refused or held else 0


def _say(line: str) -> None:
    print(f"batchcap report: {line}", file=sys.stderr)
