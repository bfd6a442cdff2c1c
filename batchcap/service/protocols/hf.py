"""Hugging Face image-to-text: the serverless Inference API and Inference Endpoints (protocol.md 1, 3).

``hf`` sends the raw image bytes with the sniffed Content-Type (the default Endpoint container rejects a
missing one). ``hf-json`` sends ``{"inputs": <base64>, "parameters": {...}}`` for custom Endpoint handlers
and for generation parameters, as huggingface_hub does when parameters are given.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchcap.errors import BadResponse
from batchcap.models import LoadedImage
from batchcap.service.protocols.base import Built

__all__ = ["HFJson", "HFRaw", "parse_generated_text"]


def parse_generated_text(body: bytes) -> str:
    """``[{"generated_text": "..."}]``; a bare object is accepted too (older servers, custom handlers)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadResponse(f"answer is not JSON: {body[:80]!r}") from None
    item = data[0] if isinstance(data, list) and data else data
    if isinstance(item, dict):
        text = item.get("generated_text")
        if isinstance(text, str):
            return text.strip()
    raise BadResponse(f'answer has no "generated_text": {body[:120]!r}')


@dataclass(frozen=True, slots=True)
class HFRaw:
    """Raw bytes in, ``generated_text`` out."""

    name: str = "hf"

    def build(self, image: LoadedImage, prompt: str | None = None) -> Built:
        return Built({"Content-Type": image.mime, "Accept": "application/json"}, image.data)

    def parse(self, body: bytes) -> str:
        return parse_generated_text(body)

    def parse_reply(self, body: bytes) -> tuple[str, str | None]:
        """The caption; image-to-text pipelines say nothing of why generation stopped."""
        return parse_generated_text(body), None


@dataclass(frozen=True, slots=True)
class HFJson:
    """Base64 JSON with ``parameters``: for handlers that want options next to the image."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    name: str = "hf-json"

    def build(self, image: LoadedImage, prompt: str | None = None) -> Built:
        payload: dict[str, Any] = {"inputs": base64.b64encode(image.data).decode("ascii")}
        if self.parameters:
            payload["parameters"] = dict(self.parameters)
        return Built({"Content-Type": "application/json", "Accept": "application/json"}, orjson.dumps(payload))

    def parse(self, body: bytes) -> str:
        return parse_generated_text(body)

    def parse_reply(self, body: bytes) -> tuple[str, str | None]:
        """The caption; image-to-text pipelines say nothing of why generation stopped."""
        return parse_generated_text(body), None
