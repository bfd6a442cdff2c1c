"""A journal a run is still writing, for the commands that read one whole (export, report): say so, or wait.

The run holds the journal's ``flock`` while it writes (``journal.fsio``). A reader that finds it held reads
what is there (a CSV with 115 of 164 images) and says that a run holds it and what was read; ``--wait [S]``
waits for the run to finish first, at most S seconds.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from batchcap.journal.fsio import held_by_a_run, wait_released

__all__ = ["WAIT_DEFAULT_S", "add_wait_argument", "held_note", "still_written"]

#: ``--wait`` without a number: how long to wait for a run to finish before reading what it has.
WAIT_DEFAULT_S = 3600.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def add_wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", nargs="?", type=_seconds, const=WAIT_DEFAULT_S, metavar="S",
                        help="if a batchcap run is still writing the JSONL, wait until it finishes, at most S "
                             f"seconds (default: {WAIT_DEFAULT_S:g}), then read it; without --wait what it holds "
                             "now is read and the command says so (exit 1)")


def still_written(results: Path, wait: float | None, say: Callable[[str], None]) -> bool:
    """Whether a run still holds ``results`` after waiting up to ``wait`` seconds (None: not waiting)."""
    if not held_by_a_run(results):
        return False
    if wait is None or wait <= 0:
        return True
    say(f"a batchcap run is writing {results}; waiting up to {wait:g} s for it to finish (--wait)")
    return not wait_released(results, wait)


def held_note(results: Path, read: str, waited: float | None) -> str:
    """The line that says a run holds the journal, and what was read of it."""
    how = f"still running after --wait {waited:g} s" if waited else "add --wait to let it finish first"
    return (f"a batchcap run is still writing {results} (it holds the journal's lock): this read {read}, what it "
            f"had written so far; run the command again when the run finishes ({how})")
