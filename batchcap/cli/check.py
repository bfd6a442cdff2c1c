"""``batchcap check INPUT [RUN FLAGS]``: the pre-flight report of the run those flags would make (text or
``--json``); nothing is sent without ``--probe``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from batchcap.check import MAX_PROBE, render, run_check
from batchcap.config import Target
from batchcap.run import run_targets
from batchcap.source.datasets import UNDERSTOOD
from batchcap.source.scan import first_image, no_images_message

from .argtypes import number
from .exit_codes import EXIT_ERRORS, EXIT_OK
from .options import add_run_options, config_from_args, ineffective_flags

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Say what `batchcap run INPUT` with the same flags would do: images, unreadable files (with the "
                     "reasons run records), copies, what --out already holds, bytes to send after preparation; "
                     "with a target, the wall time and cost. Takes every run flag; sends nothing unless --probe.")
    p.add_argument("input_dir", metavar="INPUT", help=f"what a run would caption: {UNDERSTOOD}")
    c = p.add_argument_group("check")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    c.add_argument("--probe", type=number(int, 1), metavar="N",
                   help=f"send N real requests (at most {MAX_PROBE}) to measure the target's latency; "
                        "without it check sends nothing")
    add_run_options(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 the report was made (unreadable files are findings, not failures), 1 the folder holds no image, 2 bad
    flags or paths, 3 a journal that cannot be read."""
    cfg = config_from_args(ns, input_dir=ns.input_dir, validate=False)
    routing, target = cfg.routing, cfg.target
    has_target = bool(routing.targets or target.model or target.endpoint or target.base_url or target.endpoint_name
                      or target.space)
    targets: tuple[Target, ...] = ()
    if has_target:
        cfg.validate()
        targets = run_targets(cfg)
        for line in ineffective_flags(ns, cfg, targets):
            print(f"batchcap check: warning: {line}", file=sys.stderr)
    report = run_check(cfg, has_target=has_target, probe=ns.probe or 0, targets=targets)
    if ns.json:
        sys.stdout.write(orjson.dumps(report.data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(ns.input_dir, report.out, report.inventory, report.estimates, report.probe,
                                (report.data["stale"] or {}).get("notes")))
    sys.stdout.flush()
    if report.inventory.files == 0 and not report.inventory.scan_problems and report.folder is not None:
        _, passed = first_image(report.folder, follow_symlinks=cfg.source.follow_symlinks)  # no images: quick
        print(f"batchcap check: {no_images_message(report.folder, passed)}", file=sys.stderr)
        return EXIT_ERRORS
    return EXIT_OK
