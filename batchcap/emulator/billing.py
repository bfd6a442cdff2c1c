"""What the emulated router bills for a chat answer: tokens as a VLM counts them, priced per provider.

Pure functions, so a test can compute the bill of any image and prompt by hand:

* **image tokens** as Qwen2-VL counts them: the image is resized to multiples of 28 px (14 px patches merged
  2x2) within ``MAX_IMAGE_PIXELS`` (the 1280-token setting models ship with), one token per 28x28 cell, plus the
  two vision markers. A 1008x756 photo is 36x27 = 972 + 2 tokens; a 64x48 thumbnail 2x2 = 4 + 2.
* **text tokens**: one per 4 characters, rounded up (the rule of thumb for English BPE vocabularies).
* **provider**: the model id's suffix picks it as the HF router does (``:NAME``; ``:cheapest``; ``:fastest`` or
  none: the first listed); the answer names it in ``x-inference-provider``.
* **cost**: ``(prompt_tokens x input + completion_tokens x output) / 1e6`` at that provider's price (USD per
  million tokens, the ``/v1/models`` pricing); a provider listed without a price bills nothing we can know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_IMAGE_PIXELS", "ProviderPrice", "image_tokens", "pick_provider", "text_tokens", "usage_cost"]

#: Qwen2-VL's ``max_pixels`` as commonly configured (28 x 28 x 1280): larger images are scaled down to it.
MAX_IMAGE_PIXELS = 28 * 28 * 1280
_CELL = 28


@dataclass(frozen=True, slots=True)
class ProviderPrice:
    """One provider of the emulated router; ``input`` / ``output`` in USD per 1M tokens, None: not listed."""

    name: str
    input: float | None = None
    output: float | None = None

    @property
    def priced(self) -> bool:
        return self.input is not None and self.output is not None


def text_tokens(text: str) -> int:
    """Tokens of a text: one per 4 characters, at least 1 for any text."""
    return math.ceil(len(text) / 4) if text else 0


def image_tokens(width: int, height: int) -> int:
    """Tokens of an image of this (upright) size, as Qwen2-VL's processor resizes and patches it."""
    if width < 1 or height < 1:
        return 2
    scale = min(1.0, math.sqrt(MAX_IMAGE_PIXELS / (width * height)))
    cols = max(1, round(width * scale / _CELL))
    rows = max(1, round(height * scale / _CELL))
    while cols * rows * _CELL * _CELL > MAX_IMAGE_PIXELS:  # rounding up may cross the limit: step back
        if cols >= rows:
            cols -= 1
        else:
            rows -= 1
    return cols * rows + 2


def pick_provider(model: str, providers: tuple[ProviderPrice, ...]) -> ProviderPrice | None:
    """The provider a router would send ``model`` to; None when its suffix names none that serves it."""
    if not providers:
        return None
    base, sep, suffix = model.rpartition(":")
    if not sep or not base or "/" in suffix or suffix in ("fastest", "preferred"):
        return providers[0]
    if suffix == "cheapest":
        priced = [p for p in providers if p.priced]
        return min(priced, key=lambda p: (p.input or 0.0) + (p.output or 0.0)) if priced else providers[0]
    return next((p for p in providers if p.name == suffix), None)


def usage_cost(provider: ProviderPrice | None, prompt_tokens: int, completion_tokens: int) -> float:
    """What the provider bills for these tokens (0 when it lists no price)."""
    if provider is None or provider.input is None or provider.output is None:
        return 0.0
    return (prompt_tokens * provider.input + completion_tokens * provider.output) / 1e6
