"""``batchcap check``: a pre-flight pass that says what a run would do and cost, and sends nothing.

``inventory`` (the folder pass: counts, corrupt files, copies, what is done), ``upload`` (bytes as sent,
measured with run's own preparation), ``estimate`` (wall time and cost, pure arithmetic),
``probe`` (``--probe N``: the only part that sends), ``command`` (flags and printing).
"""

from __future__ import annotations

from batchcap.check.command import MAX_PROBE, CheckOptions, CheckReport, has_target, render, take_stock
from batchcap.check.estimate import Estimate, estimate
from batchcap.check.inventory import FileFacts, Inventory, inspect, inventory
from batchcap.check.upload import SentBytes

__all__ = [
    "MAX_PROBE",
    "CheckOptions",
    "CheckReport",
    "Estimate",
    "FileFacts",
    "Inventory",
    "SentBytes",
    "estimate",
    "has_target",
    "inspect",
    "inventory",
    "render",
    "take_stock",
]
