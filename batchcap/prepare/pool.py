"""Run ``prepare`` off the event loop on every core, with a hard bound on the images being decoded.

Threads, not processes: Pillow releases the GIL in decode, resize and encode, so worker threads use every
core without pickling a 4 MB photo into another process and its result back. Measured on the 2-vCPU dev box,
12 MP phone JPEGs -> 1008x756 (``benchmarks/bench_prepare.py``, numbers in benchmarks/README.md): threads
reach the same throughput as a process pool on two cores and cost nothing to start, so a process pool has
nothing to win here.

Memory: only ``workers`` images are decoded at a time (a CapacityLimiter; further callers wait with their
bytes, which the reader stage already bounds). A 12 MP JPEG is DCT-decoded at 1/4 scale (2.3 MB); a PNG or
HEIC of 12 MP is 36 MB decoded, so the peak is ~``workers`` x 36 MB plus the encoded bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial

import anyio
import anyio.to_thread

from batchcap.errors import InputError
from batchcap.models import LoadedImage, Preparation
from batchcap.prepare.engine import (
    Prepared,
    PrepareSettings,
    WireSize,
    pass_through,
    plain_fit,
    prepare,
    raw_wire_size,
)

__all__ = ["PreparePool", "default_workers", "prepared_image"]


def prepared_image(image: LoadedImage, p: Prepared) -> LoadedImage:
    """``image`` with the bytes to send, and what the file was (for the journal's ok line)."""
    prep = Preparation(p.prepared, p.original_bytes, p.original_width, p.original_height, p.width, p.height)
    return LoadedImage(image.job, p.data, p.mime, prep=prep, digest=image.digest, asks=image.asks)


def default_workers() -> int:
    """One worker per core this process may run on (``sched_getaffinity``: respects taskset and cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class PreparePool:
    """``await pool.prepare(data)``: one image prepared on a worker thread, at most ``workers`` at once.

    ``pool.prepare_many(items)`` keeps every worker busy over a sequence and returns results in order,
    an ``InputError`` in place of each image that cannot be sent. Safe to share between tasks.
    """

    def __init__(
        self,
        settings: PrepareSettings,
        *,
        wire_size: WireSize = raw_wire_size,
        workers: int | None = None,
    ) -> None:
        self.settings = settings
        self.wire_size = wire_size
        self.workers = workers or default_workers()
        self._limiter = anyio.CapacityLimiter(self.workers)
        self._fn = partial(prepare, settings=settings, wire_size=wire_size)
        self._pass = partial(pass_through, settings=settings, wire_size=wire_size)

    def __repr__(self) -> str:
        busy = self._limiter.borrowed_tokens
        waiting = self._limiter.statistics().tasks_waiting
        return f"<PreparePool workers={self.workers} busy={busy} waiting={waiting} max_side={self.settings.max_side}>"

    async def prepare(self, data: bytes) -> Prepared:
        """Prepare one image off the loop; raises ``InputError`` like ``prepare``."""
        return await anyio.to_thread.run_sync(self._fn, data, limiter=self._limiter)

    def triage(self, image: LoadedImage) -> LoadedImage | InputError:
        """Blocking, header only (2-20 us; call it in the reader's thread): the image ready to send as it is
        (``prep`` set), the same image (``prep`` None: it needs ``await prepare``), or why it cannot be sent.

        ``image`` must come from ``images.load`` (structurally checked): the plain JPEG/PNG path relies on it.
        """
        data = image.data
        plain = plain_fit(data, self.settings, self.wire_size)
        if plain is not None:  # the small-file hot path: ~2 us
            _, w, h = plain
            return LoadedImage(image.job, data, plain[0], Preparation(False, len(data), w, h, w, h),
                               digest=image.digest, asks=image.asks)
        try:
            p = self._pass(image.data)
        except InputError as exc:
            return exc
        return image if p is None else prepared_image(image, p)

    async def prepare_many(
        self, items: Sequence[bytes], *, in_flight: int | None = None
    ) -> list[Prepared | InputError]:
        """All of ``items``, in order; at most ``in_flight`` (default 2 x workers) started and not yet done."""
        results: list[Prepared | InputError | None] = [None] * len(items)
        bound = anyio.Semaphore(in_flight or 2 * self.workers)

        async def one(i: int) -> None:
            try:
                results[i] = await self.prepare(items[i])
            except InputError as exc:
                results[i] = exc
            finally:
                bound.release()

        async with anyio.create_task_group() as tg:
            for i in range(len(items)):
                await bound.acquire()
                tg.start_soon(one, i)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
