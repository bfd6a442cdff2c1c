"""``batchcap check``: a pre-flight pass that says what a run would do and cost, and sends nothing.

``inventory`` (the folder pass: counts, corrupt files, copies, what is done), ``upload`` (bytes after
preparation: the seam for ``batchcap.prepare``), ``estimate`` (wall time and cost, pure arithmetic),
``probe`` (``--probe N``: the only part that sends), ``report`` (the report a run's config asks for, and its text).
"""

from __future__ import annotations

from batchcap.check.estimate import Estimate, estimate
from batchcap.check.inventory import FileFacts, Inventory, inspect, inventory
from batchcap.check.preflight import MAX_PROBE, CheckReport, render, run_check
from batchcap.check.upload import PrepareModel, ResizeModel, Sampled, UploadModel

__all__ = [
    "MAX_PROBE",
    "CheckReport",
    "Estimate",
    "FileFacts",
    "Inventory",
    "PrepareModel",
    "ResizeModel",
    "Sampled",
    "UploadModel",
    "estimate",
    "inspect",
    "inventory",
    "render",
    "run_check",
]
