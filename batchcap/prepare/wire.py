"""How many bytes an image of n bytes costs on the wire, measured from the protocol adapter itself.

``--max-upload-mb`` is a limit on the request body (TGI's ``--payload-limit``), so the budget must count what
the adapter wraps around the image: nothing for raw ``hf``; base64 (4/3) plus the JSON and the ``data:`` URI
prefix for ``hf-json`` and ``openai``. Measured once per run by building a request for an empty image, so a
change to an adapter's envelope (a longer prompt, more parameters) is counted without anyone updating a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchcap.models import ImageJob, LoadedImage
from batchcap.prepare.engine import WireSize, base64_wire_size, raw_wire_size
from batchcap.service.protocols.base import Adapter

__all__ = ["largest_wire_size", "wire_size_for"]

#: Room for a MIME type longer than the probe's ``image/jpeg`` (none of JPEG, PNG, WebP, GIF is).
_MIME_SLACK = 16
_PROBE = b"\xff\xd8\xff\xe0probe"


def wire_size_for(adapter: Adapter) -> WireSize:
    """The adapter's body size as a function of the image size (exact for raw, +16 bytes for base64 + JSON)."""
    job = ImageJob("probe.jpg", "probe.jpg", len(_PROBE))
    if adapter.build(LoadedImage(job, _PROBE, "image/jpeg")).body == _PROBE:
        return raw_wire_size
    envelope = len(adapter.build(LoadedImage(job, b"", "image/jpeg")).body)
    return base64_wire_size(envelope + _MIME_SLACK)


@dataclass(frozen=True, slots=True)
class _Largest:
    sizes: tuple[WireSize, ...]

    def __call__(self, n: int) -> int:
        return max(size(n) for size in self.sizes)


def largest_wire_size(sizes: Sequence[WireSize]) -> WireSize:
    """For a run with several targets: the largest body any of them would send for an image of n bytes."""
    unique = tuple(dict.fromkeys(sizes))
    return unique[0] if len(unique) == 1 else _Largest(unique)
