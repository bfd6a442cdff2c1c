"""What an emulator answered, kept so tests and benchmarks can check the server's side of a run.

Pure data: no aiohttp, no clock of its own (the app stamps each entry), so it can be built and asserted on
directly.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from batchcap.emulator.captions import Decoded

__all__ = ["LogEntry", "RequestLog", "RouteKind", "busiest"]

RouteKind = Literal["serverless", "endpoint", "chat", "health", "hub", "stats", "space", "other"]


class LogEntry(NamedTuple):
    """One answered request. ``t`` is the monotonic time it was admitted (or refused). No token is kept.

    ``decoded`` is what the model saw when the image was decoded (upright size, mode, EXIF/GPS present), else
    None; ``fault`` names the injected fault (``reset``, ``truncated``, ``garbled``, ``proxy``, ``hang``,
    ``error``) or is empty; ``queued`` is the seconds the request waited for a free replica slot.

    A chat answer's bill: ``usage`` (prompt, completion tokens), the ``provider`` that served it, what it
    ``cost`` (USD) and ``image`` (the first 16 hex digits of the image's SHA-256), so a test can check that
    each image was billed once.
    """

    t: float
    kind: RouteKind
    status: int
    nbytes: int
    auth_present: bool
    decoded: Decoded | None = None
    fault: str = ""
    queued: float = 0.0
    usage: tuple[int, int] | None = None
    provider: str = ""
    cost: float = 0.0
    image: str = ""
    prompt: str = ""
    schema: dict[str, Any] | None = None


class RequestLog:
    """What the emulator answered: the last ``maxlen`` entries, plus exact counters over its whole life."""

    __slots__ = ("_by_kind", "_by_status", "billed", "billed_usd", "bytes_received", "entries", "total")

    def __init__(self, maxlen: int = 1_000_000) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=maxlen)
        self._by_status: Counter[int] = Counter()
        self._by_kind: Counter[str] = Counter()
        self.total = 0
        self.bytes_received = 0
        self.billed_usd = 0.0  #: what every answered chat request cost, at its provider's price
        self.billed: Counter[str] = Counter()  #: answers billed per image (``LogEntry.image``)

    def record(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        self._by_status[entry.status] += 1
        self._by_kind[entry.kind] += 1
        self.total += 1
        self.bytes_received += entry.nbytes
        if entry.usage is not None:
            self.billed_usd += entry.cost
            self.billed[entry.image] += 1

    def count(self, status: int | None = None) -> int:
        """Requests answered in total, or with this status."""
        return self.total if status is None else self._by_status[status]

    def prompts(self) -> list[str]:
        """The prompts of the chat requests answered 200, in order (kept entries)."""
        return [e.prompt for e in self.entries if e.kind == "chat" and e.status == 200 and e.prompt is not None]

    def decoded(self) -> list[Decoded]:
        """What was decoded, request by request (only the kept entries that reached the decoder)."""
        return [entry.decoded for entry in self.entries if entry.decoded is not None]

    def max_per_second(self, window: float = 1.0) -> int:
        """Most requests answered 200 whose admission times fall within any half-open window of this length."""
        return busiest(sorted(entry.t for entry in self.entries if entry.status == 200), window)

    def snapshot(self) -> dict[str, object]:
        """Counters as plain JSON-ready data (the ``GET /stats`` body)."""
        return {
            "total": self.total,
            "bytes_received": self.bytes_received,
            "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
            "by_kind": dict(sorted(self._by_kind.items())),
            "max_per_second": self.max_per_second(),
            "billed_usd": round(self.billed_usd, 9),
            "billed_answers": sum(self.billed.values()),
        }

    def __repr__(self) -> str:
        return f"<RequestLog total={self.total} ok={self.count(200)} kept={len(self.entries)}>"


def busiest(times: Sequence[float], window: float) -> int:
    """Most of the sorted ``times`` inside any half-open window ``[t, t + window)``."""
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
