"""The command line: ``batchcap run | check | bench | export | report | merge | serve | samples``.

The only package that prints or picks exit codes.

``commands`` holds the command registry (modules imported only when their command runs) and the one
exception -> exit-code mapping; ``exit_codes`` the codes; ``options`` the run flags, declared once as data;
``argtypes`` shared argparse types; one module per command. Nothing else in batchcap imports this package.
"""

from __future__ import annotations

from batchcap.cli.commands import build_parser, main
from batchcap.cli.exit_codes import EXIT_ABORTED, EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ABORTED", "EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
