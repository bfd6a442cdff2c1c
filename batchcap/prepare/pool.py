"""What is sent of each file, for every command: ``run`` (its stages), ``bench`` (its images) and ``check`` (its
estimate and probe) all go through one ``PreparePool`` built the same way (``PreparePool.for_adapters``), so what
a bench measures and what a check estimates is what a run sends.

    triage(image)  header only, 2-20 us: ready to send as it is, refused (InputError), or needs pixel work
    finish(image)  the pixel work, on a worker thread (``finish_now``: the same, blocking, for a worker thread)
    ready(images)  both, for a list (bench, probe): in order, an InputError in place of each refused image

``--max-side 0`` (``settings.max_side == 0``) turns preparation off: every file goes as it is, unchecked.

Run ``prepare`` off the event loop on every core, with a hard bound on the images being decoded.

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
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from batchcap.errors import InputError, as_value
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
from batchcap.prepare.wire import largest_wire_size, wire_size_for

if TYPE_CHECKING:
    from batchcap.service.protocols.base import Adapter

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

    @classmethod
    def for_adapters(
        cls, settings: PrepareSettings, adapters: Sequence[Adapter], *, workers: int | None = None
    ) -> PreparePool:
        """The pool for requests built by ``adapters`` (one per target): the body limit is counted as each wraps
        the image, and with several targets an image must fit them all (every target gets the same bytes)."""
        wire = largest_wire_size([wire_size_for(a) for a in adapters]) if adapters else raw_wire_size
        return cls(settings, wire_size=wire, workers=workers)

    @property
    def on(self) -> bool:
        """False with ``--max-side 0``: files go as they are."""
        return self.settings.enabled

    def needs_pixels(self, image: LoadedImage) -> bool:
        """Whether ``image`` (from ``triage``) still needs ``finish`` before it can be sent."""
        return image.prep is None and self.settings.max_side > 0

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
        With preparation off, ``image`` as it is.
        """
        if not self.settings.max_side:
            return image
        data = image.data
        plain = plain_fit(data, self.settings, self.wire_size)
        if plain is not None:  # the small-file hot path: ~2 us
            _, w, h = plain
            return LoadedImage(image.job, data, plain[0], Preparation(False, len(data), w, h, w, h),
                               digest=image.digest, asks=image.asks)
        try:
            p = self._pass(image.data)
        except InputError as exc:
            return as_value(exc)
        return image if p is None else prepared_image(image, p)

    async def finish(self, image: LoadedImage) -> LoadedImage:
        """The pixel work ``triage`` left (on a worker thread): the image as sent; raises ``InputError``."""
        if not self.needs_pixels(image):
            return image
        return prepared_image(image, await self.prepare(image.data))

    def finish_now(self, image: LoadedImage) -> LoadedImage:
        """``finish``, blocking: for a caller already on a worker thread (``check``)."""
        if not self.needs_pixels(image):
            return image
        return prepared_image(image, self._fn(image.data))

    async def ready(self, images: Sequence[LoadedImage]) -> list[LoadedImage | InputError]:
        """Every image as it would be sent, in order (an ``InputError`` in place of each that cannot be)."""
        got: list[LoadedImage | InputError] = [self.triage(image) for image in images]
        heavy = [i for i, g in enumerate(got) if isinstance(g, LoadedImage) and self.needs_pixels(g)]
        done = await self.prepare_many([images[i].data for i in heavy])
        for i, p in zip(heavy, done, strict=True):
            got[i] = p if isinstance(p, InputError) else prepared_image(images[i], p)
        return got

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
                results[i] = as_value(exc)
            finally:
                bound.release()

        async with anyio.create_task_group() as tg:
            for i in range(len(items)):
                await bound.acquire()
                tg.start_soon(one, i)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
