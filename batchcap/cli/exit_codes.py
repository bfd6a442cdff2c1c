"""Every exit code batchcap returns, in one place, and the help text that lists them."""

from __future__ import annotations

__all__ = ["EXIT_ABORTED", "EXIT_CODES_HELP", "EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK = 0  #: run: every image has a caption; bench: report written
EXIT_ERRORS = 1  #: run: finished, some images have error records; bench: report written, nothing succeeded
EXIT_USAGE = 2  #: the command line, a profile or a path is wrong; nothing was sent
EXIT_ABORTED = 3  #: started, then stopped on purpose: token refused, credits, wrong target, journal/disk fault
EXIT_INTERRUPTED = 130  #: Ctrl-C / SIGTERM; run the same command again to resume

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    every image has a caption
  {EXIT_ERRORS}    finished; some images have error records (see the JSONL; --retry-failed retries them)
  {EXIT_USAGE}    the command line, a profile or a path is wrong; nothing was sent
  {EXIT_ABORTED}    started, then stopped: token refused, credits exhausted, wrong URL/model found by the
       server, journal locked/corrupt, disk full (run the same command again once fixed)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C / SIGTERM); run the same command again to resume
"""
