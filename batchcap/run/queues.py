"""The two queues between the stages, built for a per-image path with no task switch of its own.

Readers hand over whole batches and the senders take images one at a time (``Feed``); senders drop finished
records into a list that the writer takes in batches (``Sink``). Only the HTTP request itself awaits: a task
switch costs about as much as the rest of batchcap's work per image, and the bare-aiohttp anchor in
``benchmarks/`` pays none (see benchmarks/README.md). Both are bounded, so memory stays flat.
"""

from __future__ import annotations

from collections import deque

import anyio

from batchcap.models import LoadedImage, Record

__all__ = ["Feed", "Sink"]


class Feed:
    """Images for the sender pool: readers ``put`` whole batches, senders take them one at a time.

    ``pop()`` (or ``next()``) returns at once while images wait (no checkpoint, no task switch, no lock, and
    ``pop`` no coroutine); only a sender that finds the queue empty sleeps until the next batch. Readers wait
    while ``capacity`` images are queued. None once ``close``d and empty.
    """

    __slots__ = ("_closed", "_items", "_ready", "_space", "capacity")

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[LoadedImage] = deque()
        self._ready = anyio.Event()  # set when images were added (or on close) since the queue ran dry
        self._space: anyio.Event | None = None  # a reader waits on it while the queue is full
        self._closed = False

    async def put(self, batch: list[LoadedImage]) -> None:
        while len(self._items) >= self.capacity:
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()
        self._items.extend(batch)
        self._ready.set()

    def close(self) -> None:
        """No more batches: senders drain the queue, then ``next`` returns None."""
        self._closed = True
        self._ready.set()

    def drain(self) -> None:
        """Stop now: the images still queued are dropped (the next run reads them again), readers blocked on a
        full queue are released, and ``next`` returns None."""
        self._items.clear()
        if self._space is not None:
            self._space.set()
            self._space = None
        self.close()

    def pop(self) -> LoadedImage | None:
        """The next image if one is queued now, else None (then ``await next()``): no coroutine at all."""
        items = self._items
        if not items:
            return None
        image = items.popleft()
        if self._space is not None and len(items) < self.capacity:
            self._space.set()
            self._space = None
        return image

    async def next(self) -> LoadedImage | None:
        items = self._items
        while not items:
            if self._closed:
                return None
            if self._ready.is_set():
                self._ready = anyio.Event()
            await self._ready.wait()
        return self.pop()


class Sink:
    """Finished records on their way to the journal: ``put`` without a task switch, ``take`` in batches.

    The writer wakes when ``flush_at`` records wait, or every ``interval`` seconds while fewer do, or on
    ``close``. Past ``high_water`` waiting records ``full`` turns true and senders ``wait_room``: the bound
    that replaces a bounded stream's.
    """

    __slots__ = ("_closed", "_items", "_room", "_wake", "flush_at", "high_water", "interval")

    def __init__(self, *, flush_at: int, high_water: int, interval: float = 0.05) -> None:
        self.flush_at = flush_at
        self.high_water = high_water
        self.interval = interval
        self._items: list[Record] = []
        self._wake = anyio.Event()
        self._room: anyio.Event | None = None
        self._closed = False

    def put(self, record: Record) -> None:
        items = self._items
        items.append(record)
        if len(items) >= self.flush_at:
            self._wake.set()

    @property
    def full(self) -> bool:
        return len(self._items) >= self.high_water

    async def wait_room(self) -> None:
        while self.full and not self._closed:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    def close(self) -> None:
        """No more records: the writer takes what is left, then ``take`` returns None."""
        self._closed = True
        self._wake.set()

    async def take(self) -> list[Record] | None:
        """The next batch (never empty), or None once closed and drained."""
        while True:
            if len(self._items) < self.flush_at and not self._closed:
                with anyio.move_on_after(self.interval):
                    await self._wake.wait()
            if self._wake.is_set() and not self._closed:
                self._wake = anyio.Event()
            if self._items or self._closed:
                break
        batch, self._items = self._items, []
        if self._room is not None:
            self._room.set()
            self._room = None
        if not batch and self._closed:
            return None
        return batch
