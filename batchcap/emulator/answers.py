"""What the chat route answers: per prompt, a deterministic answer a test can compute, JSON when a schema is asked.

    chat_answer_for(data, "List 5 tags.")          # "a 64x48 RGB png image, mostly red (prompt 3f9a01c2)"
    json_answer_for(data, "List 5 tags.", schema)  # a value that matches ``schema``, built from the same facts

The caption part is :func:`~batchcap.emulator.captions.caption_for` (the pixels); the tag is the first 8 hex of
the prompt's SHA-256, so two tasks asked of one image get two answers and a test can tell which prompt each
answers. Without a prompt (or an empty one) the answer is the caption alone.

A JSON answer is built by walking the schema (object properties, arrays, strings, numbers, booleans, enums,
consts, ``anyOf``/``oneOf``/``allOf``, local ``$ref``), its values drawn from the caption's words and the
image's size, seeded by the image and the prompt: the same request always gets the same value.

``invalid_json_rate`` (an emulator setting): that share of (image, prompt) pairs, chosen by a seeded hash, get
an invalid reply the *first* time they are asked: alternately text around the JSON, and JSON that breaks the
schema (a required property missing). A second ask of the same pair is answered validly, as a model sampled
again usually is: a client that retries once ends with valid data for every image.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

import orjson

from batchcap.emulator.captions import caption_for

__all__ = ["chat_answer_for", "invalid_json_for", "json_answer_for", "json_value", "prompt_tag", "text_answer"]

_MAX_DEPTH = 8


def prompt_tag(prompt: str) -> str:
    """8 hex of the prompt's SHA-256: what tells two tasks' answers apart."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def text_answer(caption: str, prompt: str | None) -> str:
    """The answer to ``prompt`` for an image whose caption is ``caption``."""
    if not prompt:
        return caption
    return f"{caption} (prompt {prompt_tag(prompt)})"


def chat_answer_for(data: bytes, prompt: str | None) -> str:
    """The chat route's text answer for these image bytes and this prompt (``ValueError`` for non-images)."""
    return text_answer(caption_for(data), prompt)


def _rng(caption: str, prompt: str | None) -> random.Random:
    seed = hashlib.sha256(f"{caption}\x00{prompt or ''}".encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def json_value(caption: str, prompt: str | None, schema: Mapping[str, Any]) -> Any:
    """A value matching ``schema``, from the caption's words (deterministic in caption and prompt)."""
    words = [w.strip(",.") for w in caption.split() if w.strip(",.")] or ["image"]
    return _value(schema, schema, words, _rng(caption, prompt), 0)


def json_answer_for(data: bytes, prompt: str | None, schema: Mapping[str, Any]) -> Any:
    """The chat route's JSON answer (parsed) for these image bytes, prompt and schema."""
    return json_value(caption_for(data), prompt, schema)


def invalid_json_for(caption: str, prompt: str | None, schema: Mapping[str, Any]) -> str:
    """A reply that does not match ``schema``: text around the JSON, or the JSON without a required property."""
    value = json_value(caption, prompt, schema)
    text = orjson.dumps(value).decode()
    required = schema.get("required") if isinstance(value, dict) else None
    if _rng(caption, prompt).random() < 0.5 and isinstance(required, list) and required:
        broken = dict(value)
        broken.pop(required[0], None)
        return orjson.dumps(broken).decode()
    return f"Sure! Here is the JSON you asked for:\n{text}\nLet me know if you need anything else."


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = root
    if ref.startswith("#/"):
        for part in ref[2:].split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _value(schema: Any, root: Mapping[str, Any], words: list[str], rng: random.Random, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema and isinstance(schema["$ref"], str):
        return _value(_resolve(schema["$ref"], root), root, words, rng, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for key in ("allOf", "anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if key == "allOf":
                merged: dict[str, Any] = {}
                for part in options:
                    if isinstance(part, Mapping):
                        merged.update(part)
                return _value(merged, root, words, rng, depth + 1)
            return _value(options[0], root, words, rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        out: dict[str, Any] = {}
        for name, sub in (props.items() if isinstance(props, Mapping) else ()):
            out[name] = _value(sub, root, words, rng, depth + 1)
        for name in schema.get("required", ()) if isinstance(schema.get("required"), list) else ():
            out.setdefault(name, words[0])
        return out
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 3)))
        count = max(low, min(high, 3))
        items = schema.get("items", {})
        if schema.get("uniqueItems") and isinstance(items, Mapping) and items.get("type", "string") == "string" \
                and "enum" not in items:
            pool = list(dict.fromkeys(words)) + [f"{w}-{i}" for i, w in enumerate(words)]
            return [_string(items, [w], rng) for w in pool[:count]]
        return [_value(items, root, words, rng, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, words, rng)
    if kind == "integer":
        return _number(schema, rng, integer=True)
    if kind == "number":
        return _number(schema, rng, integer=False)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _string(schema: Mapping[str, Any], words: list[str], rng: random.Random) -> str:
    text = words[rng.randrange(len(words))]
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    while len(text) < low:
        text += " " + words[rng.randrange(len(words))]
    if isinstance(high, int):
        text = text[:high]
    return text


def _number(schema: Mapping[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
    if "exclusiveMinimum" in schema and isinstance(schema["exclusiveMinimum"], int | float):
        low = schema["exclusiveMinimum"] + (1 if integer else 1e-6)
    if "exclusiveMaximum" in schema and isinstance(schema["exclusiveMaximum"], int | float):
        high = schema["exclusiveMaximum"] - (1 if integer else 1e-6)
    if integer:
        return rng.randint(int(low), max(int(low), int(high)))
    return round(rng.uniform(float(low), max(float(low), float(high))), 3)
