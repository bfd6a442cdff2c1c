"""Several targets in one run (``--target NAME=SPEC ...``): failover or spread, behind one sender pool.

Each target is a lane: its own client, admission (circuit, limits), retry policy and guard (a ``Captioner``),
and its own concurrency. ``failover`` sends to the first lane until it fails run-level (credits spent, token
refused, wrong target, stalled, the same refusal for every image), then to the next; ``spread`` sends each image
to the lane with the most free room, so faster lanes (that free their slots sooner) take more. Which stops
drain one lane and which end the run is the guard's verdict (``guard.lane_verdict``): a drained lane's
in-flight images go to the others; the run stops only when none is left (``guard.every_target_spent``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio

from batchcap.errors import RunAborted
from batchcap.models import DEFAULT_TASK, Ask, LoadedImage, Record
from batchcap.run.attempt import Captioner, Put
from batchcap.run.guard import every_target_spent, lane_verdict
from batchcap.types import Clock

__all__ = ["Lane", "Router"]


@dataclass(slots=True, eq=False)
class Lane:
    """One target: its captioner, how many requests it may have in flight, and whether it is spent."""

    name: str
    captioner: Captioner
    concurrency: int
    in_flight: int = 0
    drained: str | None = None  #: why the lane was given up on
    drained_kind: str | None = None  #: that stop's kind (``guard.StopKind``)
    price_per_hour: float | None = None
    first: float | None = None  #: monotonic time of its first request, for the cost of its busy span
    last: float | None = None  #: ... and of its last answer

    @property
    def busy_s(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0

    @property
    def free(self) -> int:
        return self.concurrency - self.in_flight


class Router:
    """Implements ``attempt.Captions`` over several lanes."""

    def __init__(
        self, lanes: Sequence[Lane], *, route: str, released: list[Record], clock: Clock = time.monotonic
    ) -> None:
        if not lanes:
            raise ValueError("a router needs at least one lane")
        self.lanes = list(lanes)
        self.route = route
        self.released = released  # shared with every lane's captioner
        self.target = ""  # records that belong to no request (unreadable files) name no target
        counts = [lane.concurrency for lane in self.lanes]
        self.senders = sum(counts) if route == "spread" else max(counts)
        self._stack = contextlib.AsyncExitStack()
        self._changed = anyio.Event()  # a slot freed or a lane drained
        self._clock = clock  #: for each lane's busy span (what it costs)

    async def __aenter__(self) -> Self:
        for lane in self.lanes:
            await self._stack.enter_async_context(lane.captioner)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    @property
    def drained(self) -> dict[str, str]:
        return {lane.name: lane.drained for lane in self.lanes if lane.drained is not None}

    async def caption(self, image: LoadedImage, put: Put) -> None:
        """Every task of ``image`` on the lane the route picks, back to back; if the lane drains meanwhile, the
        tasks not answered yet go on on the next one."""
        asks = image.asks or (Ask(DEFAULT_TASK, None),)
        done = 0
        while done < len(asks):
            lane = await self._pick()
            lane.in_flight += 1
            if lane.first is None:
                lane.first = self._clock()
            try:
                while done < len(asks):
                    record = await lane.captioner.ask(image, asks[done], first_task=done == 0)
                    done += 1
                    if record is not None:
                        put(record)
            except RunAborted as exc:
                if lane_verdict(exc.kind) == "stop":
                    raise
                self._drain(lane, str(exc), exc.kind)
            finally:
                lane.in_flight -= 1
                lane.last = self._clock()
                self._wake()

    async def _pick(self) -> Lane:
        while True:
            live = [lane for lane in self.lanes if lane.drained is None]
            if not live:
                self._all_spent()
            if self.route == "failover":
                candidates = live[:1]
            else:
                candidates = sorted(live, key=lambda lane: -lane.free / lane.concurrency)
            for lane in candidates:
                if lane.free > 0:
                    return lane
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()

    def _all_spent(self) -> None:
        stop = every_target_spent([(lane.name, lane.drained or "", lane.drained_kind or "targets_spent")
                                   for lane in self.lanes])
        raise RunAborted(stop.message, kind=stop.kind)

    def _drain(self, lane: Lane, why: str, kind: str) -> None:
        if lane.drained is None:
            lane.drained, lane.drained_kind = why, kind
            self._wake()

    def drain(self) -> None:
        for lane in self.lanes:
            lane.captioner.drain()

    def check(self) -> None:
        """The watchdog's second: a lane stalled for ``--max-wait`` drains (or, by the guard's verdict, stops
        the run); with every lane spent, the run stops."""
        for lane in self.lanes:
            if lane.drained is not None:
                continue
            try:
                lane.captioner.check()
            except RunAborted as exc:
                if lane_verdict(exc.kind) == "stop":
                    raise
                self._drain(lane, str(exc), exc.kind)
        if all(lane.drained is not None for lane in self.lanes):
            self._all_spent()

    def slept(self, seconds: float) -> None:
        for lane in self.lanes:
            lane.captioner.slept(seconds)

    def status_note(self) -> str | None:
        notes = [f"{lane.name}: {note}" for lane in self.lanes
                 if lane.drained is None and (note := lane.captioner.status_note())]
        return "; ".join(notes) or None

    def _wake(self) -> None:
        self._changed.set()

    def summary(self) -> dict[str, dict[str, object]]:
        """Per target: whether it was spent and why, its busy seconds, and what that cost."""
        out: dict[str, dict[str, object]] = {}
        for lane in self.lanes:
            cost = None if lane.price_per_hour is None else lane.price_per_hour * lane.busy_s / 3600.0
            out[lane.captioner.target] = {"name": lane.name, "drained": lane.drained, "busy_s": round(lane.busy_s, 3),
                                          "price_per_hour": lane.price_per_hour, "cost": cost}
        return out

    def concurrency_note(self) -> str | None:
        notes = [f"{lane.name} {note}" for lane in self.lanes if (note := lane.captioner.concurrency_note())]
        return " ".join(notes) or None

    def finish(self) -> list[Record]:
        """The run ran out of images: each lane's held records, unless they show a systematic fault and no lane
        captioned anything (then the run stops)."""
        stops: list[RunAborted] = []
        out: list[Record] = []
        for lane in self.lanes:
            try:
                out.extend(lane.captioner.finish())
            except RunAborted as exc:
                stops.append(exc)
                out.extend(lane.captioner.guard.held)
        if stops and not any(lane.captioner.guard.ok_seen for lane in self.lanes):
            raise stops[0]
        return out

    def __repr__(self) -> str:
        state = ", ".join(f"{lane.name} {lane.in_flight}/{lane.concurrency}" + (" drained" if lane.drained else "")
                          for lane in self.lanes)
        return f"<Router {self.route}: {state}>"
