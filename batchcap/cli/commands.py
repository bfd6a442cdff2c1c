"""The command registry, the parser built from it, and the one exception -> exit-code mapping.

Every command is a module of this package with ``add_arguments(parser)`` and ``main(ns, argv) -> int``; the
registry names it and its help line, and the module is imported only when that command runs (``batchcap run``
does not load the emulator, the bench or the report site). A command raises from the one error tree and
``exit_for`` decides, for all of them alike, what is printed and which code is returned.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from batchcap.errors import Aborted, BatchcapError, ConfigError
from batchcap.redact import redact
from batchcap.version import __version__

from .exit_codes import EXIT_ABORTED, EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["COMMANDS", "Command", "build_parser", "exit_for", "main"]


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its help line and the module (in ``batchcap.cli``) that declares and runs it."""

    help: str
    module: str

    @property
    def prefix(self) -> str:
        return "batchcap" if self.module == "run" else f"batchcap {self.module}"

    def load(self) -> object:
        return importlib.import_module(f"batchcap.cli.{self.module}")


COMMANDS: dict[str, Command] = {
    "run": Command("caption every image under a folder into a JSONL file", "run"),
    "check": Command("pre-flight: count images, corrupt files, copies and what is done; estimate time and cost "
                     "(sends nothing)", "check"),
    "bench": Command("benchmark targets (e.g. an Endpoint vs the free API) on the same images", "bench"),
    "export": Command("write a run's captions as a training set (imagefolder, kohya, csv, parquet, openai-batch)",
                      "export"),
    "report": Command("write a static site (thumbnails, captions, errors, search) to look at a run", "report"),
    "merge": Command("join shard journals into one (one line per image: an ok record wins, then the latest)",
                     "merge"),
    "serve": Command("start the local emulator of the hosted services", "serve"),
    "samples": Command("write a folder of varied sample images (for the demo and for trying batchcap)", "samples"),
}


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors print the one useful line first, then where the help is (not 23 lines
    of usage), and exit 2."""

    def error(self, message: str) -> NoReturn:
        # redact: argparse repeats the value it rejects ("unrecognized arguments: hf_..."), and a token pasted in
        # the wrong place must not be printed back (issue 21)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(message)}\nsee {self.prog} --help\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s flags are declared (its module imported), the others listed by name."""
    parser = _Parser(
        prog="batchcap",
        allow_abbrev=False,
        description="Caption whole image folders through hosted inference services, resumably.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"batchcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            cmd.load().add_arguments(p)  # type: ignore[attr-defined]
    return parser


def exit_for(exc: BaseException, prefix: str) -> tuple[int, list[str]]:
    """The exit code and the lines to print for an error that ended a command (decided by class)."""
    if isinstance(exc, ConfigError):  # the command line, a profile or a path: nothing was sent
        return EXIT_USAGE, [f"{prefix}: error: {exc}"]
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


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _command_of(argv)
    parser = build_parser(name)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help -> 0, usage errors -> 2
        return int(exc.code or 0)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = COMMANDS[ns.command]
    module = command.load()
    try:
        return int(module.main(ns, argv))  # type: ignore[attr-defined]
    except (BatchcapError, KeyboardInterrupt) as exc:
        code, lines = exit_for(exc, command.prefix)
        for line in lines:
            print(redact(line), file=sys.stderr)
        return code
