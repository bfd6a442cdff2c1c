"""How many bytes a run will send, measured with the run's own preparation (``batchcap.prepare.PreparePool``).

The pool ``check`` uses is the one ``run`` builds (``run.preparer_for``: the same settings, the same body limit
as the target's adapter wraps the image), so what is counted here is what a run sends:

* images the header says go as they are: their exact size on the wire (no decode);
* images that need pixel work (resize, turn, convert, strip): the first ``first`` of them and then 1 in
  ``every`` are really prepared and measured; the others get the measured ratio of sent to disk bytes.

A measured image that cannot be prepared (pixel data damaged behind a good header) is an error ``run`` would
record; ``SentBytes.add`` returns the ``InputError`` so the inventory counts it as unreadable. Such files are
found only among the measured ones: the output's ``bytes_to_send_method`` says how many were.
"""

from __future__ import annotations

from batchcap.errors import InputError
from batchcap.models import LoadedImage
from batchcap.prepare import PreparePool

__all__ = ["SentBytes"]


class SentBytes:
    """Wire bytes per image a run would send; ``add`` is called once per request, in scan order."""

    __slots__ = ("_disk", "_n", "_sent", "every", "first", "measured", "pool")

    def __init__(self, pool: PreparePool, *, first: int = 8, every: int = 20) -> None:
        if first < 0 or every < 1:
            raise ValueError(f"first must be >= 0 and every >= 1 (got {first}, {every})")
        self.pool = pool
        self.first = first
        self.every = every
        self.measured = 0  #: images really prepared
        self._n = 0  #: images that needed pixel work
        self._disk = 0
        self._sent = 0

    def describe(self) -> str:
        s = self.pool.settings
        if not self.pool.on:
            return "measured: files as they are (--max-side 0)"
        return (f"measured with run's preparation (long side <= {s.max_side} px, JPEG quality {s.jpeg_quality}, "
                f"metadata {'kept' if s.keep_metadata else 'stripped'}), as the target's requests carry it; "
                f"of the images that need pixel work, {self.measured} prepared and the rest scaled by their "
                "ratio")

    def add(self, triaged: LoadedImage) -> int | InputError:
        """Bytes on the wire for ``triaged`` (from ``pool.triage``), or why preparing it failed (measured ones)."""
        wire = self.pool.wire_size
        if not self.pool.needs_pixels(triaged):
            return wire(len(triaged.data))
        n = self._n
        self._n += 1
        if n < self.first or n % self.every == 0 or not self._disk:
            try:
                ready = self.pool.finish_now(triaged)
            except InputError as exc:
                return exc
            self.measured += 1
            self._disk += len(triaged.data)
            self._sent += len(ready.data)
            return wire(len(ready.data))
        return wire(int(len(triaged.data) * self._sent / self._disk))
