"""What a run asks of every image: its tasks, from ``--task``/``--schema`` flags and ``[tasks.NAME]`` tables.

    --task tags="List 5 tags for this {{ folder }} photo." --task caption="Describe the image."
    --schema tags=tags.json            # the tags task answers JSON that matches tags.json
    [tasks.tags]                       # a profile table: prompt, max_tokens, temperature, schema
    prompt = "List 5 tags."
    schema = "tags.json"               # relative to the profile's folder

Without ``--task`` or tables a run has one task, ``caption``, asking ``--prompt``: today's runs and files.
With ``--task`` the command line says which tasks run: ``NAME=PROMPT`` (taking a same-named table's other
keys), or a bare ``NAME`` picking a profile's table as it is. Pure: no file is read here (schemas are loaded
by ``batchcap.tasks.schema``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchcap.errors import UsageError
from batchcap.models import DEFAULT_TASK
from batchcap.settings import parse_bool, setting

__all__ = ["TABLE_KEYS", "TASK_NAME", "TaskSettings", "TaskSpec"]

#: A task's name: a column in exports and a key in every journal line, so plain and short.
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: Names a task cannot take: export columns of their own.
_RESERVED = frozenset({"file_name"})
#: The keys of a ``[tasks.NAME]`` table.
TABLE_KEYS = ("prompt", "max_tokens", "temperature", "schema")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task: its name, its prompt template, and what it overrides of the run's generation settings."""

    name: str
    prompt: str  #: a template (``batchcap.tasks.template``); plain text is a template without variables
    max_tokens: int | None = None  #: None: the run's --max-tokens
    temperature: float | None = None  #: None: the run's --temperature
    schema: str | None = None  #: path of a JSON schema file: the answer must be JSON matching it


def _check_name(name: str, flag: str) -> str:
    if not TASK_NAME.fullmatch(name) or name in _RESERVED:
        raise UsageError(f"{flag}: task name {name!r} must be 1-64 letters, digits, '_' or '-' (starting with a "
                         "letter or digit), and not file_name; e.g. --task tags=\"List 5 tags.\"")
    return name


def _strings(value: Any, name: str = "") -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"--{name} must be NAME=... text (got {value!r})")
    return tuple(value)


def _tables(value: Any, name: str = "tasks") -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(t, Mapping) for t in value.values()):
        raise UsageError("[tasks] in a profile must hold one table per task: [tasks.NAME] with prompt = \"...\"")
    return {str(k): dict(v) for k, v in value.items()}


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """The tasks settings of a run: ``--task`` (repeatable), ``--schema`` (repeatable), ``--keep-stale`` and the
    profile's ``[tasks.NAME]`` tables (the profile key ``tasks``). Checked on construction (``UsageError``, exit
    2, names the flag)."""

    task: tuple[str, ...] = setting((), parse=_strings)  #: ``NAME=PROMPT`` or ``NAME`` (a profile table), in order
    schema: tuple[str, ...] = setting((), parse=_strings)  #: ``NAME=FILE.json``
    keep_stale: bool = setting(False, parse=parse_bool)  #: keep answers made otherwise instead of asking again
    #: ``[tasks.NAME]`` tables of a profile, in file order (schema paths resolved by the profile loader)
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, metadata={"parse": _tables})

    def __post_init__(self) -> None:
        for name in ("task", "schema"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, _strings(value, name))
        for text in self.task:
            if not isinstance(text, str):
                raise UsageError(f"--task must be NAME=PROMPT (got {text!r})")
            name, eq, _ = text.partition("=")
            _check_name(name, "--task")
            if not eq and name not in self.tasks:
                raise UsageError(f"--task {name}: no prompt; give --task {name}=PROMPT, or define [tasks.{name}] "
                                 "in the profile (--config)")
        for text in self.schema:
            name, eq, path = text.partition("=") if isinstance(text, str) else ("", "", "")
            if not eq or not path:
                raise UsageError(f"--schema must be NAME=FILE.json, e.g. --schema tags=tags.json (got {text!r})")
            _check_name(name, "--schema")
        if not isinstance(self.tasks, Mapping):
            raise UsageError("[tasks] in a profile must hold one table per task: [tasks.NAME] with prompt = ...")
        for name, table in self.tasks.items():
            _check_name(name, f"[tasks.{name}]")
            if not isinstance(table, Mapping):
                raise UsageError(f"[tasks.{name}] must be a table (prompt = ..., max_tokens = ..., ...)")
            unknown = sorted(set(table) - set(TABLE_KEYS))
            if unknown:
                raise UsageError(f"[tasks.{name}]: unknown key {unknown[0]!r}; known: {', '.join(TABLE_KEYS)}")
            _check_table(name, table)

    def specs(self, *, prompt: str, max_tokens: int | None = None, temperature: float | None = None
              ) -> tuple[TaskSpec, ...]:
        """The run's tasks in order. ``prompt`` is the run's ``--prompt`` (the one task of a run without tasks);
        ``max_tokens``/``temperature`` fill in what a task leaves out (None: leave it to the target's run
        settings)."""
        tables = {name: _spec(name, table) for name, table in self.tasks.items()}
        if self.task:
            chosen: list[TaskSpec] = []
            for text in self.task:
                name, eq, template = text.partition("=")
                base = tables.get(name)
                if eq:
                    chosen.append(TaskSpec(name, template, base.max_tokens if base else None,
                                           base.temperature if base else None, base.schema if base else None))
                else:
                    assert base is not None  # checked in __post_init__
                    chosen.append(base)
        elif tables:
            chosen = list(tables.values())
        else:
            chosen = [TaskSpec(DEFAULT_TASK, prompt)]
        names = [t.name for t in chosen]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise UsageError(f"--task {dup} is given twice; each task needs its own name")
        schemas: dict[str, str] = {}
        for text in self.schema:
            name, _, path = text.partition("=")
            if name not in names:
                raise UsageError(f"--schema {name}=...: there is no task {name!r} (tasks: {', '.join(names)}); "
                                 f"add --task {name}=PROMPT")
            schemas[name] = path
        out = []
        for t in chosen:
            out.append(TaskSpec(
                t.name, t.prompt,
                t.max_tokens if t.max_tokens is not None else max_tokens,
                t.temperature if t.temperature is not None else temperature,
                schemas.get(t.name, t.schema),
            ))
        return tuple(out)


def _check_table(name: str, table: Mapping[str, Any]) -> None:
    prompt = table.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f"[tasks.{name}] needs prompt = \"...\" (the question asked of every image)")
    tokens = table.get("max_tokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1):
        raise UsageError(f"[tasks.{name}] max_tokens must be a whole number >= 1 (got {tokens!r})")
    temp = table.get("temperature")
    if temp is not None and (isinstance(temp, bool) or not isinstance(temp, int | float) or not 0 <= temp <= 2):
        raise UsageError(f"[tasks.{name}] temperature must be between 0 and 2 (got {temp!r})")
    schema = table.get("schema")
    if schema is not None and (not isinstance(schema, str) or not schema):
        raise UsageError(f"[tasks.{name}] schema must be the path of a JSON schema file (got {schema!r})")


def _spec(name: str, table: Mapping[str, Any]) -> TaskSpec:
    temp = table.get("temperature")
    return TaskSpec(name, table["prompt"], table.get("max_tokens"), None if temp is None else float(temp),
                    table.get("schema"))
