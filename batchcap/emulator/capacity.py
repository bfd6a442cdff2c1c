"""The model's capacity: replicas with a few slots each, one FIFO queue in front, optional batching.

The real Endpoint container runs one inference at a time (protocol.md section 9): a request beyond capacity waits,
and a request whose client has gone still runs to its end, so a client that times out and retries queues the
retry behind its own abandoned request. This module models exactly that and nothing else.

The model is processor sharing with a batching cost. Each request brings ``work`` seconds (its latency when it
runs alone). A replica runs up to ``slots`` requests together; with ``b`` of them running each progresses at
``1 / (1 + alpha * (b - 1))`` of its solo speed. ``alpha = 0`` is independent threads (``--replica-concurrency``);
``alpha > 0`` is TGI/vLLM-style continuous batching (``--max-batch``): a full batch of ``b`` takes
``latency * (1 + alpha * (b - 1))``, so throughput grows with the batch, by less each time. A request waits in
the queue until some replica has a free slot (the one with the fewest running wins), and joins at once.

One scheduler task per pool wakes at every arrival and at the next completion; callers wait on a shielded
future, so cancelling a caller (the client went away) never takes its work off the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from batchcap.emulator.settings import Capacity

__all__ = ["ModelPool"]

_DONE = 1e-9  # remaining work below this counts as finished (float residue of the progress arithmetic)


class _Job:
    __slots__ = ("done", "enqueued", "remaining", "started")

    def __init__(self, work: float, enqueued: float, done: asyncio.Future[float]) -> None:
        self.remaining = work
        self.enqueued = enqueued
        self.started = enqueued
        self.done = done


class ModelPool:
    """Runs requests through ``capacity``; ``await pool.run(work)`` returns the seconds spent queued."""

    __slots__ = ("_capacity", "_last", "_queue", "_replicas", "_task", "_wake", "completed")

    def __init__(self, capacity: Capacity) -> None:
        self._capacity = capacity
        self._queue: deque[_Job] = deque()
        self._replicas: list[list[_Job]] = [[] for _ in range(capacity.replicas)]
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0
        self.completed = 0

    @property
    def running(self) -> int:
        return sum(len(jobs) for jobs in self._replicas)

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self, work: float) -> float:
        """Queue ``work`` seconds of model time and wait until it is done; returns the time spent queued."""
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._last = loop.time()
            self._task = loop.create_task(self._schedule(), name="emulator-model-pool")
        job = _Job(max(0.0, work), loop.time(), loop.create_future())
        self._queue.append(job)
        self._wake.set()
        return await asyncio.shield(job.done)

    async def close(self) -> None:
        """Stop the scheduler; requests still waiting are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for job in [*self._queue, *(job for jobs in self._replicas for job in jobs)]:
            job.done.cancel()
        self._queue.clear()
        for jobs in self._replicas:
            jobs.clear()

    def _speed(self, running: int) -> float:
        return 1.0 / (1.0 + self._capacity.alpha * max(0, running - 1))

    def _advance(self, now: float) -> None:
        """Progress every running job by the time since the last event; finish the ones that are done."""
        elapsed, self._last = now - self._last, now
        for jobs in self._replicas:
            if not jobs:
                continue
            step = elapsed * self._speed(len(jobs))
            for job in jobs:
                job.remaining -= step
            finished = [job for job in jobs if job.remaining <= _DONE]
            for job in finished:
                jobs.remove(job)
                self.completed += 1
                if not job.done.done():
                    job.done.set_result(job.started - job.enqueued)

    def _admit(self, now: float) -> None:
        slots = self._capacity.slots
        while self._queue:
            replica = min(self._replicas, key=len)
            if len(replica) >= slots:
                return
            job = self._queue.popleft()
            job.started = now
            replica.append(job)

    def _next_event(self) -> float | None:
        """Seconds until the next job finishes at today's speeds, or None when nothing runs."""
        best: float | None = None
        for jobs in self._replicas:
            if jobs:
                soonest = min(job.remaining for job in jobs) / self._speed(len(jobs))
                best = soonest if best is None else min(best, soonest)
        return best

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            self._advance(now)
            self._admit(now)
            timeout = self._next_event()
            if timeout is not None and timeout <= _DONE:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def __repr__(self) -> str:
        c = self._capacity
        return f"<ModelPool {c.replicas}x{c.slots} alpha={c.alpha:g} running={self.running} queued={self.queued}>"
