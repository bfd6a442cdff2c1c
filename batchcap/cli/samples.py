"""``batchcap samples``: a folder of varied sample images, for the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from batchcap.cli.argtypes import number
from batchcap.cli.exit_codes import EXIT_OK
from batchcap.source.samples import generate

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", type=Path)
    p.add_argument("--count", type=number(int, 1), default=300)
    p.add_argument("--seed", type=int, default=0)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    paths = generate(ns.dest, ns.count, seed=ns.seed)
    print(f"batchcap: {len(paths)} sample images in {ns.dest}", file=sys.stderr)
    return EXIT_OK
