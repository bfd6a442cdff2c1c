"""OpenAI-compatible vision chat (``/v1/chat/completions``): the HF router, TGI, vLLM (protocol.md 4)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchcap.errors import BadResponse
from batchcap.models import LoadedImage, Usage
from batchcap.service.protocols.base import Built

__all__ = ["OpenAIChat", "usage_of"]


@dataclass(frozen=True, slots=True)
class OpenAIChat:
    """One user message: the prompt text and the image as a ``data:`` URI. ``model`` goes first (routers).

    ``response_format`` (a task with a schema, ``batchcap.tasks.schema``) asks for JSON in the target's spelling.
    """

    model: str
    prompt: str
    max_tokens: int = 64
    temperature: float = 0.0
    name: str = "openai"
    response_format: Mapping[str, Any] | None = None

    def build(self, image: LoadedImage, prompt: str | None = None) -> Built:
        uri = f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": self.prompt if prompt is None else prompt},
                        {"type": "image_url", "image_url": {"url": uri}},
                    ],
                }
            ],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        if self.response_format is not None:
            payload["response_format"] = self.response_format
        return Built({"Content-Type": "application/json", "Accept": "application/json"}, orjson.dumps(payload))

    def parse(self, body: bytes) -> str:
        return self.parse_reply(body)[0]

    def parse_reply(self, body: bytes) -> tuple[str, str | None]:
        """The caption and ``choices[0].finish_reason`` (``"length"`` = cut off at ``max_tokens``), if given."""
        text, reason, _ = self.parse_answer(body)
        return text, reason

    def parse_answer(self, body: bytes) -> tuple[str, str | None, Usage | None]:
        """The caption, the finish reason and the ``usage`` the server billed (None when it sent none)."""
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadResponse(f"answer is not JSON: {body[:80]!r}") from None
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BadResponse(f"answer has no choices[0].message.content: {body[:120]!r}") from None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is None and choice.get("finish_reason") == "length":
            content = ""  # vLLM: a reply cut off before any text; the quality gates judge it
        if not isinstance(content, str):
            raise BadResponse(f"message content is not text: {body[:120]!r}")
        reason = choice.get("finish_reason")
        return content.strip(), reason if isinstance(reason, str) else None, usage_of(data)


def usage_of(data: Any) -> Usage | None:
    """``usage.prompt_tokens`` / ``completion_tokens`` as reported (TGI and vLLM always send them); None when they
    are missing or not whole numbers >= 0: a caption is never lost over its bill."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt: Any = usage.get("prompt_tokens")
    completion: Any = usage.get("completion_tokens")
    if not (_count(prompt) and _count(completion)):
        return None
    return Usage(int(prompt), int(completion))


def _count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0
