"""Image preparation: what the model needs of each file, and nothing else (issue 8).

``prepare(data, settings, wire_size=...)`` is pure and blocking; ``PreparePool`` runs it off the event loop on
every core with a bound on the images in flight.
"""

from __future__ import annotations

from batchcap.prepare.engine import (
    DCT_SLACK,
    DEFAULT_MAX_PIXELS,
    Base64WireSize,
    Prepared,
    PrepareSettings,
    WireSize,
    base64_wire_size,
    pass_through,
    prepare,
    raw_wire_size,
)
from batchcap.prepare.pool import PreparePool, default_workers, prepared_image
from batchcap.prepare.settings import USEFUL_SIDE, below_useful_size
from batchcap.prepare.wire import largest_wire_size, wire_size_for

__all__ = [
    "DCT_SLACK",
    "DEFAULT_MAX_PIXELS",
    "USEFUL_SIDE",
    "Base64WireSize",
    "PreparePool",
    "PrepareSettings",
    "Prepared",
    "WireSize",
    "base64_wire_size",
    "below_useful_size",
    "default_workers",
    "largest_wire_size",
    "pass_through",
    "prepare",
    "prepared_image",
    "raw_wire_size",
    "wire_size_for",
]
