"""The seam the senders call: ``Captions`` (one target's ``Captioner`` or several targets' ``Router``), where each
task's record goes (``Put``), and how a target asks one task (``TaskAsk``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from batchcap.models import LoadedImage, Record
from batchcap.service.protocols import Adapter
from batchcap.tasks.fingerprint import TaskPrint
from batchcap.tasks.schema import Schema

__all__ = ["Captions", "Put", "TaskAsk"]

#: Where a task's record goes the moment it is made (the senders' sink and the copies waiting for it).
Put = Callable[[Record], None]


@dataclass(frozen=True, slots=True)
class TaskAsk:
    """How one target asks one task: its adapter (generation settings, ``response_format``), its schema, and
    the fingerprints its answers carry (None: records without one, for callers that have no plan)."""

    adapter: Adapter
    schema: Schema | None = None
    print: TaskPrint | None = None



class Captions(Protocol):
    """What the senders call: one target (``Captioner``) or several (``route.Router``)."""

    #: records the guard held back and released: the senders write them.
    released: list[Record]
    #: the name written into records that belong to no request (unreadable files).
    target: str
    #: how many senders keep it busy.
    senders: int

    async def caption(self, image: LoadedImage, put: Put) -> None:
        """Ask every ``image.asks`` (back to back, one target), handing each task's record to ``put``."""
        ...

    def finish(self) -> list[Record]:
        """The run ran out of images: the held records to write, or ``RunAborted`` if they show a fault."""

    def drain(self) -> None:
        """Stop: no attempt starts from now on; the ones in flight finish (the first Ctrl-C)."""

    def check(self) -> None:
        """The watchdog's second: raises ``RunAborted`` for a stop that comes with time (``--max-wait``)."""

    def slept(self, seconds: float) -> None:
        """The process slept that long: it does not count toward ``--max-wait``."""

    def status_note(self) -> str | None:
        """A line for the progress display while something holds the run up (an outage), else None."""

    def concurrency_note(self) -> str | None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...
