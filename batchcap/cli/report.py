"""``batchcap report``: a static site (file:// or a Static Space) to look at a run's captions and errors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from batchcap.site.command import add_arguments as add_site_arguments
from batchcap.site.command import run_from_args

__all__ = ["HELP", "PREFIX", "add_arguments", "main"]

HELP = "write a static site (thumbnails, captions, errors, search) to look at a run"
PREFIX = "batchcap report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_site_arguments(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 written, 1 written with lines skipped (not records, unsafe paths), 2 usage, 3 unreadable/unwritable."""
    return run_from_args(ns)
