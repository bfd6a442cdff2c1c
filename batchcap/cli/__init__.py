"""The command line: ``batchcap run | serve | bench | samples | export | report | merge``.

The only package that prints or picks exit codes.

``app`` holds the command registry and the one exception -> exit-code mapping; ``exit_codes`` the codes;
``options`` the run flags; one module per command. Nothing else in batchcap imports this package.
"""

from __future__ import annotations

from batchcap.cli.app import build_parser, main
from batchcap.cli.exit_codes import EXIT_ABORTED, EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ABORTED", "EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
