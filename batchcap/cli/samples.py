"""``batchcap samples``: a folder of varied sample images, for the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from batchcap.cli.argtypes import number
from batchcap.cli.exit_codes import EXIT_OK
from batchcap.errors import UsageError
from batchcap.source.samples import foreign_entries, generate
from batchcap.words import plural

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Write COUNT deterministic sample images (PNG, JPEG, WebP, GIF; 32-512 px; nested folders)\n"
                     "into DEST, for trying batchcap without a folder of your own. The same seed always gives\n"
                     "the same files, and a second run rewrites nothing.")
    p.add_argument("dest", metavar="DEST", type=Path,
                   help="folder to write into (created if missing); it must be empty or hold earlier samples")
    p.add_argument("--count", type=number(int, 1), default=300, help="number of images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="another seed gives other images (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that already holds other files (they are left as they are)")


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    if not ns.force and (foreign := foreign_entries(ns.dest)):
        if not ns.dest.is_dir():
            raise UsageError(f"{ns.dest} is not a folder; pass a new or empty folder for the samples")
        raise UsageError(f"{ns.dest} already holds other files ({', '.join(foreign)}{', ...' if len(foreign) > 2 else ''}); "
                         "pass a new or empty folder, or add --force to write the samples among them")
    paths = generate(ns.dest, ns.count, seed=ns.seed)
    print(f"batchcap: {plural(len(paths), 'sample image')} in {ns.dest}", file=sys.stderr)
    return EXIT_OK
