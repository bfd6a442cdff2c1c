"""argparse value types and flags that several commands share (run, bench, serve, export, report)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from batchcap.aio import EVENT_LOOPS

__all__ = ["add_event_loop_flag", "add_overwrite_flag", "number"]


def number(kind: Callable[[str], float], minimum: float, *, strict: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``kind`` parsed, finite, then checked ``> minimum`` (strict) or ``>= minimum``."""
    noun = "a whole number" if kind is int else "a number"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value) or not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def add_event_loop_flag(parser: argparse.ArgumentParser | Any) -> None:
    """``--event-loop``: the same choice for every command that runs the client."""
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="auto",
                        help="auto = uvloop where installed, else asyncio (default: auto)")


def add_overwrite_flag(parser: argparse.ArgumentParser | Any) -> None:
    """``--overwrite``, meaning the same for every command that writes output files (``journal.owned``)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that are already there though batchcap did not write them (or "
                             "they were changed since); without it such a file is kept and nothing is written "
                             "(exit 2)")
