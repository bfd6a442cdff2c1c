"""The command registry, the parser built from it, and the one exception -> exit-code mapping.

Every command is a module with ``HELP``, ``add_arguments(parser)`` and ``main(ns, argv) -> int``; adding a
command is one line in ``COMMANDS``. A command raises from the one error tree and ``exit_for`` decides, for
all of them alike, what is printed and which code is returned: no command catches its own errors to pick one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from batchcap.cli import bench, check, export, merge, report, run, samples, serve
from batchcap.cli.argtypes import Parser
from batchcap.cli.exit_codes import EXIT_ABORTED, EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_USAGE
from batchcap.errors import Aborted, BatchcapError, ConfigError, UsageError
from batchcap.redact import redact
from batchcap.version import __version__

__all__ = ["COMMANDS", "Command", "build_parser", "exit_for", "main"]


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its help line, its flags, its body, and the name its messages start with."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace, Sequence[str]], int]
    prefix: str = "batchcap"

    @classmethod
    def of(cls, module: ModuleType) -> Command:
        return cls(module.HELP, module.add_arguments, module.main, getattr(module, "PREFIX", "batchcap"))


COMMANDS: dict[str, Command] = {
    "run": Command.of(run),
    "serve": Command.of(serve),
    "bench": Command.of(bench),
    "check": Command.of(check),
    "samples": Command.of(samples),
    "export": Command.of(export),
    "report": Command.of(report),
    "merge": Command.of(merge),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="batchcap",
        allow_abbrev=False,
        description="Caption whole image folders through hosted inference services, resumably.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"batchcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(p)
    return parser


def exit_for(exc: BaseException, prefix: str) -> tuple[int, list[str]]:
    """The exit code and the lines to print for an error that ended a command (decided by class)."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE, [f"{prefix}: error: {exc}"]
    if isinstance(exc, ConfigError):
        return EXIT_ABORTED, [f"{prefix}: config error: {exc}"]
    if isinstance(exc, Aborted):
        lines = [f"{prefix}: aborted: {exc}"]
        if exc.advice:
            lines.append(f"{prefix}: {exc.advice}")
        return EXIT_ABORTED, lines
    if isinstance(exc, BatchcapError):
        return EXIT_ABORTED, [f"{prefix}: aborted: {exc}"]
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, [f"{prefix}: interrupted"]
    raise exc


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help -> 0, usage errors -> 2
        return int(exc.code or 0)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = COMMANDS[ns.command]
    try:
        return command.main(ns, argv)
    except (BatchcapError, KeyboardInterrupt) as exc:
        code, lines = exit_for(exc, command.prefix)
        for line in lines:
            print(redact(line), file=sys.stderr)
        return code
