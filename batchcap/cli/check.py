"""``batchcap check DIR``: print the pre-flight report (text or ``--json``); nothing is sent without --probe."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from batchcap.check import MAX_PROBE, check_from_args, render
from batchcap.cli.argtypes import number
from batchcap.cli.exit_codes import EXIT_OK
from batchcap.config import RunConfig, parse_rate
from batchcap.errors import ConfigError
from batchcap.flow.budget import TokenPrice, parse_token_price

__all__ = ["HELP", "PREFIX", "add_arguments", "main"]

HELP = "pre-flight: count images, corrupt files, copies and what is done; estimate time and cost (sends nothing)"
PREFIX = "batchcap check"


def _price(text: str) -> float:
    try:
        value = float(text.removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dollars per hour, e.g. 0.60 (got {text!r})") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0 dollars (got {text!r})")
    return value


def _token_price(text: str) -> TokenPrice:
    try:
        return parse_token_price(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--token-price ")) from None


def _rate(text: str) -> float | str:
    try:
        value = parse_rate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--rate: ")) from None
    return math.inf if value is None else value


def _add_check_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``batchcap check``."""
    p.add_argument("input_dir", metavar="DIR", type=Path, help="folder of images (searched recursively)")
    p.add_argument("--out", type=Path, help="the JSONL results file a run would resume: count what is already done")
    p.add_argument("--target", metavar="SPEC",
                   help="estimate time and cost for this target: hf:MODEL, an Endpoint URL, openai:MODEL@BASE_URL "
                        "or a profile .toml (as in bench)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--probe", type=number(int, 1), metavar="N",
                   help=f"send N real requests (at most {MAX_PROBE}) to measure the target's latency; "
                        "without it check sends nothing")
    p.add_argument("--price-per-hour", type=_price, metavar="P", help="the target's price in dollars per hour")
    p.add_argument("--token-price", type=_token_price, metavar="IN,OUT",
                   help="a chat target's USD per 1M input and output tokens for the --probe estimate (default: "
                        "its /v1/models prices, per provider)")
    p.add_argument("--dedupe", choices=("exact", "near", "off"), default="exact",
                   help="copies to find: exact (same bytes, default), near (also resized / re-saved), off")
    p.add_argument("--no-dedupe", dest="dedupe", action="store_const", const="off", help="same as --dedupe off")
    p.add_argument("--concurrency", type=number(int, 1), help="requests in flight for the estimate (default: the target's)")
    p.add_argument("--rate", type=_rate, help="requests per second for the estimate, or 'unlimited' (default: the target's)")
    p.add_argument("--burst", type=number(int, 1), help="burst for the estimate (default: the target's)")
    p.add_argument("--token-file", type=Path, help="token for --probe (default: $HF_TOKEN, then the HF token file)")
    p.add_argument("--retry-failed", action="store_true", help="count earlier final errors as to do, as run would")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symbolic links (default: skip them)")
    p.add_argument("--max-image-mb", type=float, default=RunConfig().max_image_mb,
                   help="larger files count as unreadable, as run records them (default: %(default)s)")
    p.add_argument("--readers", type=number(int, 1), default=2, help="reader threads (default: %(default)s)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    _add_check_arguments(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """0 the report was made (unreadable files are findings, not failures), 2 bad flags, 3 unreadable folder/journal."""
    report = check_from_args(ns)
    if ns.json:
        sys.stdout.write(orjson.dumps(report.data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(ns.input_dir, ns.out, report.inventory, report.estimate, report.probe))
    sys.stdout.flush()
    return EXIT_OK
