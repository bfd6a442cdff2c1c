"""``batchcap check``: a pre-flight pass that says what a run would do and cost, and sends nothing.

``inventory`` (the folder pass: counts, corrupt files, copies, what is done, each file judged by the run's own
preparation), ``header`` (sizes from headers), ``upload`` (bytes as sent, measured with the run's pool),
``estimate`` (wall time and cost, pure arithmetic), ``probe`` (``--probe N``: the only part that sends),
``preflight`` (the report a run's config asks for, and its text).
"""

from __future__ import annotations

from batchcap.check.estimate import Estimate, estimate
from batchcap.check.inventory import FileFacts, Inventory, inspect, inventory
from batchcap.check.preflight import MAX_PROBE, CheckReport, render, run_check
from batchcap.check.upload import SentBytes

__all__ = [
    "MAX_PROBE",
    "CheckReport",
    "Estimate",
    "FileFacts",
    "Inventory",
    "SentBytes",
    "estimate",
    "inspect",
    "inventory",
    "render",
    "run_check",
]
