"""Ctrl-C / SIGTERM during a bench: cancel the step under way, keep every finished step for the report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio

__all__ = ["Interrupt"]


class Interrupt:
    """Set by ``fire`` (from ``batchcap.aio.watch_signals``); each measurement runs inside ``step()``."""

    __slots__ = ("_scopes", "requested")

    def __init__(self) -> None:
        self.requested = False
        self._scopes: set[anyio.CancelScope] = set()

    def fire(self) -> None:
        self.requested = True
        for scope in self._scopes:
            scope.cancel()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Run one measurement; an interrupt cancels it (its partial numbers are dropped, not half-reported)."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if self.requested:
                    scope.cancel()
                yield
            finally:
                self._scopes.discard(scope)
