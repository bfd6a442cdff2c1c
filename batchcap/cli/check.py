"""``batchcap check DIR``: print the pre-flight report (text or ``--json``); nothing is sent without --probe."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from batchcap.check import add_arguments as add_check_arguments
from batchcap.check import check_from_args, render

from .exit_codes import EXIT_OK

__all__ = ["HELP", "PREFIX", "add_arguments", "main"]

HELP = "pre-flight: count images, corrupt files, copies and what is done; estimate time and cost (sends nothing)"
PREFIX = "batchcap check"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_check_arguments(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 the report was made (unreadable files are findings, not failures), 2 bad flags, 3 unreadable folder/journal."""
    report = check_from_args(ns)
    if ns.json:
        sys.stdout.write(orjson.dumps(report.data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(ns.input_dir, ns.out, report.inventory, report.estimate, report.probe))
    sys.stdout.flush()
    return EXIT_OK
