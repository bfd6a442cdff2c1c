"""The test doubles every unit test shares: one fake clock, one fake service caller. No sockets, no real sleeps.

    clock = FakeClock()                        # clock() reads it; await clock.sleep(2) moves it by 2 at once
    limiter = RateLimiter(2.0, 1, clock=clock, sleep=clock.sleep)

    timers = FakeClock(scheduled=True)         # many sleeping tasks: each sleep waits its turn, and
    async with anyio.create_task_group() as tg:  # run() jumps to the next timer whenever all are blocked
        ...; await timers.run()

    caller = FakeCaller(ok("a cat"), ServerError("boom", status=500), ok("a dog"))   # one outcome per call
    captioner = Captioner(caller, ...)          # the ServiceClient seam, as httpx's MockTransport is a Client's

A plain module (tests/ is on ``sys.path``, see conftest.py), not a conftest: fixtures stay in conftest.py.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import anyio

from batchcap.errors import APIError
from batchcap.models import ImageJob, LoadedImage
from batchcap.service.client import Reply
from batchcap.service.protocols import Adapter, HFRaw

__all__ = ["FakeCaller", "FakeClock", "image", "ok"]


class FakeClock:
    """Time that moves only when told: ``clock()`` reads it, ``advance(s)`` moves it, ``sleep(s)`` too.

    Immediate (the default): ``await sleep(s)`` records ``s`` in ``sleeps`` and moves time by ``s`` at once,
    enough for one task at a time. ``scheduled=True``: a sleep waits until ``run()`` (driving the test) reaches
    its due time, jumping from timer to timer whenever every other task is blocked; for many sleeping tasks.
    """

    def __init__(self, now: float = 0.0, *, scheduled: bool = False) -> None:
        self.now = now
        self.scheduled = scheduled
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.scheduled:
            self.now += seconds
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), event))
        await event.wait()

    async def run(self) -> None:
        """Scheduled mode: wake the sleepers in due order until none is left and every task is blocked."""
        while True:
            await anyio.wait_all_tasks_blocked()
            if not self._timers:
                return
            when, _, event = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            event.set()

    def __repr__(self) -> str:
        return f"<FakeClock now={self.now:g} sleeps={len(self.sleeps)} timers={len(self._timers)}>"


Outcome = Reply | APIError | Callable[[LoadedImage], Reply | APIError]


def ok(caption: str = "a photo of a cat", *, latency: float = 0.01, nbytes: int = 1000,
       finish_reason: str | None = None) -> Reply:
    """A successful answer as ``CaptionClient`` returns it."""
    return Reply(caption, latency, nbytes, None, 200, finish_reason)


def image(path: str = "a.jpg", data: bytes = b"\xff\xd8\xff\xe0 jpeg bytes \xff\xd9") -> LoadedImage:
    """An image ready to send (as the preparation stage hands it to the senders)."""
    return LoadedImage(ImageJob(path, path, len(data)), data, "image/jpeg")


class FakeCaller:
    """Implements ``batchcap.service.client.ServiceClient``: each call takes the next outcome (a ``Reply``, an ``APIError``
    to raise, or ``f(image)`` giving either), and is recorded in ``calls`` as ``(path, adapter)``.

    ``gate``: when set to an ``anyio.Event``, every call waits for it first (to hold requests in flight).
    Running out of outcomes fails the test: a caller asked more often than the test expected is a finding.
    """

    def __init__(self, *outcomes: Outcome, adapter: Adapter | None = None, repeat: Outcome | None = None) -> None:
        self.outcomes = list(outcomes)
        self.repeat = repeat  #: the outcome of every call once ``outcomes`` is used up (None: fail the test)
        self.adapter: Adapter = adapter or HFRaw()
        self.calls: list[tuple[str, Adapter | None]] = []
        self.prompts: list[str | None] = []  #: the prompt of each call (a task's, rendered; None: the adapter's)
        self.gate: anyio.Event | None = None
        self.in_flight = 0
        self.entered = self.closed = False
        self.host = "fake.example"
        self.capacity: int | None = None  #: calls the service says it runs at once (a Space), else None

    async def server_kind(self) -> str:
        return "openai"

    async def caption(self, image: LoadedImage, *, adapter: Adapter | None = None, prompt: str | None = None
                      ) -> Reply:
        self.calls.append((image.job.path, adapter))
        self.prompts.append(prompt)
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.outcomes:
                outcome = self.outcomes.pop(0)
            elif self.repeat is not None:
                outcome = self.repeat
            else:
                raise AssertionError(f"FakeCaller: call {len(self.calls)} ({image.job.path}) has no outcome left")
            if callable(outcome) and not isinstance(outcome, Reply | APIError):
                outcome = outcome(image)
            if isinstance(outcome, APIError):
                raise outcome
            return outcome
        finally:
            self.in_flight -= 1

    async def __aenter__(self) -> Any:
        self.entered = True
        return self

    async def close(self) -> None:
        self.closed = True

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
