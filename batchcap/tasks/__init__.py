"""What is asked of each image and what counts as an answer (issue 16).

``spec`` (tasks from flags and profile tables), ``template`` (prompts as sandboxed Jinja2, checked before any
request), ``context`` (the variables of one image: folder, path, stem, sidecar, EXIF), ``schema`` (structured
replies: how each target is asked, whether a reply matches), ``fingerprint`` (what produced an answer), and
``quality`` (the caption quality gates). Names are imported on first use: the settings module imports
``quality`` at start-up, and Jinja2 and jsonschema are only needed once a run begins.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchcap.tasks.fingerprint import Parts, TaskPrint
    from batchcap.tasks.schema import Schema, load_schema
    from batchcap.tasks.spec import TaskSettings, TaskSpec
    from batchcap.tasks.template import PromptTemplate

__all__ = ["Parts", "PromptTemplate", "Schema", "TaskPrint", "TaskSettings", "TaskSpec", "load_schema"]

_WHERE = {
    "Parts": "fingerprint",
    "TaskPrint": "fingerprint",
    "Schema": "schema",
    "load_schema": "schema",
    "TaskSettings": "spec",
    "TaskSpec": "spec",
    "PromptTemplate": "template",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'batchcap.tasks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"batchcap.tasks.{module}"), name)
