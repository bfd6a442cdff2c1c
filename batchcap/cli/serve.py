"""``batchcap serve``: the local emulator of the hosted services, in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from batchcap.emulator import add_arguments as add_emulator_arguments
from batchcap.emulator import serve, settings_from_args

__all__ = ["HELP", "add_arguments", "main"]

HELP = "start the local emulator of the hosted services"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Start the local emulator of the HF Inference API, Inference Endpoints and OpenAI-compatible "
                     "chat servers (for the demo, tests and benchmarks).")
    add_emulator_arguments(p)


def main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    return serve(settings_from_args(ns), ns.host, ns.port)
