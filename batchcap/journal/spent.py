"""What earlier runs of a journal spent: the ``cost_usd`` of its records, summed as the index loads (issue 18).

The loader's fast path cuts each ok line's ``"cost_usd":N`` text out (``texts``); the slow path adds parsed
values (``values``). ``flush`` turns them into one exact sum per chunk, so memory stays flat whatever the
journal's length.
"""

from __future__ import annotations

import math

__all__ = ["Spent"]


def _number(text: bytes) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Spent:
    """The costs of the records read so far."""

    __slots__ = ("count", "sums", "texts", "values")

    def __init__(self) -> None:
        self.texts: list[bytes] = []  #: costs as the fast path cut them out, converted per chunk
        self.values: list[float] = []  #: costs of this chunk's records, parsed
        self.sums: list[float] = []  #: one exact sum per chunk
        self.count = 0  #: records with a cost

    def add(self, cost: object) -> None:
        """A parsed record's ``cost_usd`` (anything that is not a finite number counts as no cost)."""
        if isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost):
            self.values.append(float(cost))

    def flush(self) -> None:
        """The chunk's costs into one exact sum."""
        texts, values = self.texts, self.values
        if texts:
            try:
                values.extend(map(float, texts))
            except ValueError:  # not a number after all (a hand-edited line): those count as no cost
                values.extend(v for v in map(_number, texts) if v is not None)
            texts.clear()
        if values:
            self.sums.append(math.fsum(values))
            self.count += len(values)
            values.clear()

    @property
    def total(self) -> float:
        self.flush()
        return math.fsum(self.sums)
