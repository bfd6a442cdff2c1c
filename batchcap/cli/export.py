"""``batchcap export``: the captions of a run as a training set (imagefolder, kohya, csv, parquet, openai-batch)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from batchcap.export.command import add_arguments as add_export_arguments
from batchcap.export.command import run_from_args

__all__ = ["HELP", "PREFIX", "add_arguments", "main"]

HELP = "write a run's captions as a training set (imagefolder, kohya, csv, parquet, openai-batch)"
PREFIX = "batchcap export"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_export_arguments(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 exported, 1 exported with something left out to look at, 2 usage, 3 unreadable/unwritable."""
    return run_from_args(ns)
