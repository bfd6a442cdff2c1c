"""``batchcap merge OUT.jsonl PART...``: join shard journals into one journal (and one manifest)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from batchcap.cli.exit_codes import EXIT_OK
from batchcap.journal.merge import merge_journals
from batchcap.run import manifest_path
from batchcap.words import plural

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Join the journals of `batchcap run --shard I/N` (or any journals over the same folder) into "
                     "OUT: exactly one line per image, an ok record over any error, then the latest; manifests "
                     "combined. OUT may be one of the parts; otherwise it must not exist yet.")
    p.add_argument("out", metavar="OUT.jsonl", type=Path, help="the merged journal to write")
    p.add_argument("parts", metavar="PART", type=Path, nargs="+", help="shard journals (part-1.jsonl ...)")


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    stats = merge_journals(ns.out, ns.parts)
    err = sys.stderr
    print(f"batchcap: merged {plural(stats.parts, 'journal')} into {ns.out}: {plural(stats.images, 'image')} "
          f"({stats.ok} ok, {plural(stats.errors, 'error')}); {plural(stats.superseded, 'older record')} dropped"
          + (f", {plural(stats.torn, 'torn last line')} skipped" if stats.torn else ""), file=err)
    print(f"batchcap: manifest {manifest_path(ns.out)}", file=err)
    return EXIT_OK
