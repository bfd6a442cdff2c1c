"""How many bytes an image costs on the wire once prepared.

:class:`PrepareModel` runs the run's own ``batchcap.prepare`` on an image and counts what it would send;
wrapped in :class:`Sampled`, only every ``every``-th image pays for a real resize (the rest get the sample's
ratio of sent to disk bytes): ``inventory(..., upload=Sampled(PrepareModel(settings), every=50))``, what
``batchcap check`` does. :class:`ResizeModel` is the cheap stand-in (``bytes * (long_side / long)^2``) for
callers that want no decode at all. The output says which model was used (``UploadModel.describe``).
"""

from __future__ import annotations

from typing import Protocol

from batchcap.errors import InputError
from batchcap.prepare import PrepareSettings, prepare

__all__ = ["PrepareModel", "ResizeModel", "Sampled", "UploadModel"]


class UploadModel(Protocol):
    """Bytes one image would send after preparation."""

    def describe(self) -> str: ...

    def sent_bytes(self, data: bytes, mime: str, size: tuple[int, int] | None) -> int: ...


class PrepareModel:
    """What ``batchcap run`` would send: the image through ``prepare`` with the run's default settings."""

    __slots__ = ("settings",)

    def __init__(self, settings: PrepareSettings | None = None) -> None:
        self.settings = settings or PrepareSettings()

    def describe(self) -> str:
        s = self.settings
        return (f"measured: images prepared as run prepares them (long side <= {s.max_side} px, JPEG quality "
                f"{s.jpeg_quality}, metadata stripped)")

    def sent_bytes(self, data: bytes, mime: str, size: tuple[int, int] | None) -> int:
        try:
            return len(prepare(data, self.settings).data)
        except InputError:
            return 0  # run records it and sends nothing


class ResizeModel:
    """``bytes * min(1, (long_side / long)^2)``: a stand-in that needs no decode."""

    __slots__ = ("long_side",)

    def __init__(self, long_side: int = 1024) -> None:
        self.long_side = long_side

    def describe(self) -> str:
        return (f"estimated: images whose long side is over {self.long_side} px counted as scaled to it "
                f"(bytes x ({self.long_side}/long side)^2)")

    def sent_bytes(self, data: bytes, mime: str, size: tuple[int, int] | None) -> int:
        if size is None:
            return len(data)
        long = max(size)
        if long <= self.long_side:
            return len(data)
        return max(1, int(len(data) * (self.long_side / long) ** 2))


class Sampled:
    """Run ``model`` on every ``every``-th image; the others get the sample's sent/disk ratio."""

    __slots__ = ("_disk", "_n", "_sent", "every", "model")

    def __init__(self, model: UploadModel, *, every: int = 50) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 (got {every})")
        self.model = model
        self.every = every
        self._n = 0
        self._disk = 0
        self._sent = 0

    def describe(self) -> str:
        return f"{self.model.describe()} (measured on 1 image in {self.every}, scaled to the rest)"

    def sent_bytes(self, data: bytes, mime: str, size: tuple[int, int] | None) -> int:
        n = self._n
        self._n += 1
        if n % self.every == 0:
            sent = self.model.sent_bytes(data, mime, size)
            self._disk += len(data)
            self._sent += sent
            return sent
        return int(len(data) * self._sent / self._disk) if self._disk else len(data)
