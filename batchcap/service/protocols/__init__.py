"""Protocol adapters, one per service shape, chosen by name. Adding a shape touches only this package."""

from __future__ import annotations

from collections.abc import Callable

from batchcap.config import RunConfig
from batchcap.service.protocols.base import Adapter, Built, classify, error_message, parse_answer, parse_reply
from batchcap.service.protocols.hf import HFJson, HFRaw
from batchcap.service.protocols.openai import OpenAIChat

__all__ = ["REGISTRY", "Adapter", "Built", "HFJson", "HFRaw", "OpenAIChat", "classify", "error_message", "make_adapter",
           "parse_answer", "parse_reply"]

REGISTRY: dict[str, Callable[[RunConfig], Adapter]] = {
    "hf": lambda cfg: HFRaw(),
    "hf-json": lambda cfg: HFJson(parameters=dict(cfg.parameters or {})),
    "openai": lambda cfg: OpenAIChat(
        model=cfg.model or "", prompt=cfg.prompt, max_tokens=cfg.max_tokens, temperature=cfg.temperature
    ),
}


def make_adapter(cfg: RunConfig) -> Adapter:
    """The adapter for ``cfg.api``."""
    return REGISTRY[cfg.api](cfg)
