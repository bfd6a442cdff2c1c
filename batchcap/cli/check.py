"""``batchcap check DIR``: print the pre-flight report (text or ``--json``); nothing is sent without --probe.

It takes what ``run`` takes for the target, the limits and the preparation (``--config``, ``--model``,
``--endpoint``, ``--target NAME=SPEC``, ``--rate``, ``--max-side``...), so ``batchcap run`` becomes
``batchcap check`` with the same flags, and the report is about that very run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from batchcap.check import MAX_PROBE, CheckOptions, render, take_stock
from batchcap.cli.argtypes import number
from batchcap.cli.exit_codes import EXIT_OK
from batchcap.cli.options import add_prepare_arguments, add_target_arguments, config_from_args, default
from batchcap.config import DEDUPE_CHOICES

__all__ = ["HELP", "PREFIX", "add_arguments", "main"]

HELP = "pre-flight: count images, corrupt files, copies and what is done; estimate time and cost (sends nothing)"
PREFIX = "batchcap check"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``batchcap check``: run's own (same names, same meaning), and the report's."""
    p.description = ("Say what `batchcap run` with the same flags would do: the files it would record as errors, "
                     "the copies, the requests it would send and their bytes, what --out already holds, and with "
                     "a target the time and cost. Nothing is sent without --probe.")
    p.add_argument("input_dir", metavar="DIR", type=Path, help="folder of images (searched recursively)")
    p.add_argument("--out", type=Path,
                   help=f"the JSONL results file a run would resume: count what is already done (default: "
                        f"{default('out')}, if it exists)")
    p.add_argument("--config", type=Path, help="TOML profile (see configs/), as in run; flags given here override it")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--probe", type=number(int, 1), metavar="N",
                   help=f"send N real requests (at most {MAX_PROBE}) to measure the target's latency; "
                        "without it check sends nothing")
    add_target_arguments(p)
    i = p.add_argument_group("input, as in run")
    i.add_argument("--dedupe", choices=DEDUPE_CHOICES,
                   help=f"copies to find: exact (same bytes), near (also resized / re-saved), off (default: "
                        f"{default('dedupe')})")
    i.add_argument("--no-dedupe", dest="dedupe", action="store_const", const="off", help="same as --dedupe off")
    i.add_argument("--retry-failed", action="store_true", default=None,
                   help="count earlier final errors as to do, as run would")
    i.add_argument("--follow-symlinks", action="store_true", default=None,
                   help="follow symbolic links (default: skip them)")
    i.add_argument("--max-image-mb", type=number(float, 0, strict=True),
                   help=f"larger files count as unreadable, as run records them (default: {default('max_image_mb')})")
    i.add_argument("--readers", type=number(int, 1), default=2, help="reader threads (default: %(default)s)")
    add_prepare_arguments(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 the report was made (unreadable files are findings, not failures), 2 bad flags, 3 unreadable folder/journal."""
    cfg = config_from_args(ns, need_target=False)
    report = take_stock(cfg, CheckOptions(probe=ns.probe, readers=ns.readers))
    if ns.json:
        sys.stdout.write(orjson.dumps(report.data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = cfg.out if cfg.out.exists() else None
        sys.stdout.write(render(cfg.input_dir, out, report.inventory, report.estimates, report.probe))
    sys.stdout.flush()
    return EXIT_OK
