"""Which column holds which answer: the per-task column mapping of the table exports (imagefolder, csv, parquet).

    table_columns(["caption"], {}, text_column="text")            # [Column("text", "caption")]: today's files
    table_columns(["caption", "tags"], {"tags": ["labels"]})       # caption, tags, tags.labels

One task named ``caption`` (every run without ``--task``) keeps the single ``text`` column (``--text-column``
renames it). Several tasks give one column per task, named after it; ``--text-column TASK`` puts that task's
answers in the ``text`` column a trainer reads by default (the others keep their names). A task with a schema
also gets one ``TASK.FIELD`` column per top-level field of its answers' ``data`` (what a dataset viewer shows
best); its own column keeps the reply's JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchcap.errors import UsageError
from batchcap.models import DEFAULT_TASK

__all__ = ["Column", "answer_text", "cell_text", "row", "table_columns"]

_TEXT = "text"


@dataclass(frozen=True, slots=True)
class Column:
    """One output column: its name, the task whose answer fills it, and the field of that answer's data."""

    name: str
    task: str
    field: str | None = None


def table_columns(tasks: Sequence[str], fields: Mapping[str, Sequence[str]], *, text_column: str = _TEXT
                  ) -> list[Column]:
    """The columns after ``file_name`` (see the module docstring); ``UsageError`` for a clash."""
    if not tasks:
        tasks = [DEFAULT_TASK]
    out: list[Column] = []
    if list(tasks) == [DEFAULT_TASK]:
        out.append(Column(text_column, DEFAULT_TASK))
    else:
        if text_column != _TEXT and text_column not in tasks:
            raise UsageError(f"--text-column {text_column}: with several tasks it names the task whose answers go in "
                             f"the text column (tasks: {', '.join(tasks)})")
        out.extend(Column(_TEXT if task == text_column else task, task) for task in tasks)
    for task in tasks:
        out.extend(Column(f"{task}.{name}", task, name) for name in fields.get(task, ()))
    names = [c.name for c in out]
    clash = next((n for n in names if names.count(n) > 1 or n == "file_name"), None)
    if clash is not None:
        raise UsageError(f"two answers would share the column {clash!r}; pick another --text-column")
    return out


def row(columns: Sequence[Column], answers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Column name -> value for one image (None where its task has no answer). Field values keep their JSON type."""
    out: dict[str, Any] = {}
    for c in columns:
        rec = answers.get(c.task)
        if rec is None:
            out[c.name] = None
        elif c.field is None:
            out[c.name] = rec.get("caption")
        else:
            data = rec.get("data")
            out[c.name] = data.get(c.field) if isinstance(data, dict) else None
    return out


def cell_text(value: Any) -> str | None:
    """A value as a text cell (csv, parquet): strings as they are, other JSON values as JSON."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def answer_text(rec: Mapping[str, Any]) -> str:
    """An answer as one line of a caption file: a schema task's list of words joined by ", " (a tag list), or
    its one list field's; anything else as the reply's text."""
    data = rec.get("data")
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and len(data) == 1:
            data = lists[0]
    if isinstance(data, list) and data and all(isinstance(v, str | int | float) for v in data):
        return ", ".join(str(v) for v in data)
    text = rec.get("caption")
    return text if isinstance(text, str) else ""
