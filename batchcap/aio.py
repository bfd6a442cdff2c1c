"""Event-loop plumbing that ``run`` and ``bench`` share: picking the loop, signals, exception-group leaves.

Both commands stop the same way on Ctrl-C / SIGTERM: a task watches the signals through anyio and calls back,
and the command decides what "stop" means (the run drains its writer; the bench keeps its finished steps).
"""

from __future__ import annotations

import gc
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio

from batchcap.errors import ConfigError

__all__ = ["EVENT_LOOPS", "GEN0_THRESHOLD", "first_leaf", "leaves", "run_async", "throughput_gc", "watch_signals"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
#: Allocations of tracked objects between young collections while a command runs (CPython's default is 700).
GEN0_THRESHOLD = 10_000


@contextmanager
def throughput_gc() -> Iterator[None]:
    """The cyclic collector tuned for a pipeline of many short-lived objects, and put back afterwards.

    Each image's request, task and record objects live across awaits, so at CPython's default young-generation
    size (700) ~430 collections per 20,000 images traverse and promote them, and the full collections walk every
    imported module too: 17 us of collector time per image against nginx's canned reply. A young generation of
    10,000 and the start-up heap frozen (``gc.freeze``, never traversed) make it 3 us, ~12% of the CPU per image
    by the median (``benchmarks/README.md``, "Garbage collection"). Unfrozen at the end, so a process that runs
    several commands (tests, a Ray worker) keeps nothing frozen.
    """
    old = gc.get_threshold()
    gc.collect()  # garbage left by start-up is freed now, not frozen for the run's length
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def run_async(fn: Callable[[], Awaitable[T]], loop: str = "auto") -> T:
    """Run ``fn`` on uvloop where it installs (cheaper per request), else on plain asyncio."""
    use_uvloop = False
    if loop in ("auto", "uvloop"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            if loop == "uvloop":
                raise ConfigError("--event-loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            use_uvloop = True
    with throughput_gc():
        return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


async def watch_signals(on_signal: Callable[[], None], then: Callable[[], None] | None = None) -> None:
    """Call ``on_signal`` at the first SIGINT or SIGTERM, and ``then`` (if given) at the second, then return.

    Run it as a task; cancel it when done. A run drains at the first signal and stops at once at the second:
    the watcher keeps the signals while the drain lasts, so a second Ctrl-C is a decision, not a traceback.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        seen = 0
        async for _ in signals:
            seen += 1
            if seen == 1:
                on_signal()
                if then is None:
                    return
            else:
                assert then is not None
                then()
                return


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; a plain exception is its own leaf."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(leaves(sub))
        return out
    return [exc]


def first_leaf(exc: BaseException, kind: type[E]) -> E | None:
    """The first leaf of ``exc`` that is a ``kind``, or None."""
    for leaf in leaves(exc):
        if isinstance(leaf, kind):
            return leaf
    return None
