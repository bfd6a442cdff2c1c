"""What produced an answer, as 24 hex digits every journal line carries: settings (8), then this question (16).

    parts = Parts.of(target="openai Qwen/Qwen2.5-VL-7B-Instruct https://router.huggingface.co/v1",
                     template="List tags for this {{ folder }} photo.", generation={"max_tokens": 64, ...},
                     schema=b"", preparation={"max_side": 1024, "jpeg_quality": 90, "max_upload_mb": 2.0})
    fp = TaskPrint(parts)
    fp.fingerprint("List tags for this cat photo.")   # '3f9a01c2' + '8c1e0d97b2a4f611'

* The **answer** part (last 16 hex) hashes what the model was given: the target (API, model, endpoint or
  base URL), the prompt *as rendered for this image*, the generation parameters, the schema and the
  preparation settings that change the pixels sent. Equal answer parts mean the same question: a rerun keeps
  the answer; the same image content elsewhere (a copy, a moved file) gets it without a request.
* The **spec** part (first 8 hex) hashes the task's settings with the template *source* in place of the
  rendered prompt: one value per task and settings, the same for every image. It is what the run names
  when it says "task tags: prompt changed since 120 answers", by looking the spec up in the manifest's
  invocations (``Parts.as_dict`` holds one short hash per component so the change can be named).

Targets that take no prompt (raw image bytes) hash no prompt; generation parameters are those the target
is sent (chat: max_tokens and temperature; ``hf-json``: its ``parameters``; raw bytes: none). The quality
gates are not part of it: they judge answers, they do not change the question.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["COMPONENTS", "FINGERPRINT_HEX", "SPEC_HEX", "Parts", "TaskPrint", "spec_of"]

SPEC_HEX = 8
FINGERPRINT_HEX = 24
#: The components of a fingerprint, in the order they are hashed and named ("prompt changed", ...).
COMPONENTS = ("target", "prompt", "generation", "schema", "preparation")
_CACHE_MAX = 4096


def _h(data: bytes, size: int) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def _canon(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


@dataclass(frozen=True, slots=True)
class Parts:
    """A task's settings on one target, each component as canonical bytes (the template as written)."""

    target: bytes
    template: bytes  #: b"" for targets that take no prompt
    generation: bytes
    schema: bytes
    preparation: bytes

    @classmethod
    def of(cls, *, target: str, template: str | None, generation: Mapping[str, Any] | None,
           schema: bytes = b"", preparation: Mapping[str, Any] | None = None) -> Parts:
        return cls(
            target.encode("utf-8", "surrogatepass"),
            b"" if template is None else template.encode("utf-8", "surrogatepass"),
            _canon(dict(generation or {})),
            schema,
            _canon(dict(preparation or {})),
        )

    def as_dict(self) -> dict[str, str]:
        """One short hash per component (``COMPONENTS`` order): what the manifest keeps to name a change."""
        return {name: _h(value, 4) for name, value in zip(COMPONENTS, self._values(), strict=True)}

    def _values(self) -> tuple[bytes, ...]:
        return self.target, self.template, self.generation, self.schema, self.preparation

    def spec(self) -> str:
        """The 8-hex settings part."""
        return _h(b"\x00".join(self._values()), SPEC_HEX // 2)


class TaskPrint:
    """Fingerprints of one task on one target; the answer part is cached per rendered prompt."""

    __slots__ = ("_base", "_cache", "parts", "prompted", "spec")

    def __init__(self, parts: Parts, *, prompted: bool = True) -> None:
        self.parts = parts
        self.prompted = prompted  #: the target is sent a prompt (else the answer hashes none)
        self.spec = parts.spec()
        self._base = b"\x00".join((parts.target, parts.generation, parts.schema, parts.preparation)) + b"\x00"
        self._cache: dict[str | None, str] = {}

    def fingerprint(self, prompt: str | None) -> str:
        """The 24 hex of an answer to ``prompt`` (as rendered for the image; None for raw-bytes targets)."""
        fp = self._cache.get(prompt)
        if fp is None:
            text = b"" if prompt is None or not self.prompted else prompt.encode("utf-8", "surrogatepass")
            fp = self.spec + _h(self._base + text, (FINGERPRINT_HEX - SPEC_HEX) // 2)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[prompt] = fp
        return fp

    def __repr__(self) -> str:
        return f"<TaskPrint spec={self.spec} prompted={self.prompted}>"


def spec_of(fingerprint: str) -> str:
    """The settings part of a fingerprint."""
    return fingerprint[:SPEC_HEX]
