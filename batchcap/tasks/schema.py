"""Structured replies: a task's JSON schema, how each target is asked for it, and whether a reply matches.

    schema = load_schema(Path("tags.json"), task="tags")
    schema.response_format("openai")   # {"type": "json_schema", "json_schema": {"name": "tags", "schema": {...}}}
    schema.response_format("tgi")      # {"type": "json_schema", "value": {"name": "tags", "schema": {...}}}
    schema.check('{"tags": ["cat"]}')  # ({"tags": ["cat"]}, None); ("...", "why not") for a bad reply

How targets spell it (``response_format`` in the chat body):

* OpenAI, the Hugging Face router and vLLM (its OpenAI-compatible server):
  ``{"type": "json_schema", "json_schema": {"name": NAME, "schema": SCHEMA}}``;
* TGI (text-generation-inference, router/src/lib.rs ``GrammarType``, adjacently tagged):
  ``{"type": "json_schema", "value": {"name": NAME, "schema": SCHEMA}}`` (TGI >= 3.x; older TGI takes
  ``{"type": "json", "value": SCHEMA}``). TGI refuses the OpenAI spelling with a 422, so it is sent only
  where the target is known to be TGI (``batchcap.service.protocols.openai``).

``strict`` is not sent: OpenAI's strict mode refuses schemas without ``additionalProperties: false`` on every
object; every reply is checked here instead (``jsonschema``, the schema's own draft). A reply wrapped in one
Markdown code fence is read inside it. The schema file is the user's; it is checked once, at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from jsonschema import exceptions as js_exceptions
from jsonschema import validators

from batchcap.errors import UsageError

__all__ = ["SCHEMA_STYLES", "Schema", "SchemaStyle", "load_schema"]

SchemaStyle = Literal["openai", "tgi"]
SCHEMA_STYLES: tuple[SchemaStyle, ...] = ("openai", "tgi")
_MAX_SCHEMA_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, eq=False)
class Schema:
    """One task's schema, checked; ``canonical`` is its JSON with sorted keys (for the fingerprint)."""

    name: str
    body: dict[str, Any]
    source: str
    canonical: bytes
    validator: Any  #: the ``jsonschema`` validator of the schema's draft

    @classmethod
    def of(cls, name: str, body: Any, *, source: str = "") -> Schema:
        """Check ``body`` as a JSON schema (``UsageError`` naming the task otherwise)."""
        where = f"--schema {name}={source}" if source else f"the schema of task {name}"
        if not isinstance(body, dict):
            raise UsageError(f"{where}: a JSON schema is an object, like {{\"type\": \"object\", ...}}")
        try:
            validator_cls = validators.validator_for(body)
            validator_cls.check_schema(body)
        except js_exceptions.SchemaError as exc:
            raise UsageError(f"{where}: not a valid JSON schema: {exc.message}") from None
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return cls(name, body, source, canonical, validator_cls(body))

    def response_format(self, style: SchemaStyle = "openai") -> dict[str, Any]:
        """The ``response_format`` of a chat request in ``style`` (see the module docstring)."""
        spec = {"name": self.name, "schema": self.body}
        if style == "tgi":
            return {"type": "json_schema", "value": spec}
        return {"type": "json_schema", "json_schema": spec}

    def check(self, text: str) -> tuple[Any, str | None]:
        """``(data, None)`` when ``text`` is JSON matching the schema, else ``(None, why)``."""
        body = _unfence(text)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return None, f"not JSON: {exc}"[:200]
        error = js_exceptions.best_match(self.validator.iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the reply"
            return None, f"{where}: {error.message}"[:200]
        return data, None

    def __repr__(self) -> str:
        return f"<Schema {self.name} from {self.source or '(inline)'}>"


def _unfence(text: str) -> str:
    """The inside of one Markdown code fence (```json ... ```) around the whole reply, else the reply."""
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and len(body) >= 6:
        inner = body[3:-3]
        first, nl, rest = inner.partition("\n")
        if nl and first.strip().isalpha():  # the fence's language tag
            inner = rest
        return inner.strip()
    return body


def load_schema(path: Path, *, task: str) -> Schema:
    """Read and check a schema file; ``UsageError`` with the fix when it is missing, not JSON or not a schema."""
    where = f"--schema {task}={path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file; give the path of a JSON schema file") from None
    except IsADirectoryError:
        raise UsageError(f"{where}: is a folder; give the path of a JSON schema file") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > _MAX_SCHEMA_BYTES:
        raise UsageError(f"{where}: {len(raw):,} bytes is too large for a schema (at most 1 MB)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from None
    return Schema.of(task, body, source=str(path))
