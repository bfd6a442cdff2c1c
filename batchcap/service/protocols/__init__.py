"""Protocol adapters, one per service shape, chosen by name. Adding a shape touches only this package."""

from __future__ import annotations

from collections.abc import Callable

from batchcap.service.protocols.base import Adapter, Built, classify, error_message, parse_answer, parse_reply
from batchcap.service.protocols.hf import HFJson, HFRaw
from batchcap.service.protocols.openai import OpenAIChat
from batchcap.service.settings import TargetSettings

__all__ = ["REGISTRY", "Adapter", "Built", "HFJson", "HFRaw", "OpenAIChat", "classify", "error_message", "make_adapter",
           "parse_answer", "parse_reply"]

REGISTRY: dict[str, Callable[[TargetSettings], Adapter]] = {
    "hf": lambda t: HFRaw(),
    "hf-json": lambda t: HFJson(parameters=dict(t.parameters or {})),
    "openai": lambda t: OpenAIChat(
        model=t.model or "", prompt=t.prompt, max_tokens=t.max_tokens, temperature=t.temperature
    ),
}


def make_adapter(target: TargetSettings) -> Adapter:
    """The adapter for ``target.api`` (for ``--space``: the Space's, whose image goes as it is in an upload)."""
    if target.space is not None:
        from batchcap.service.space.spaceclient import SpaceAdapter

        return SpaceAdapter()
    return REGISTRY[target.api](target)
