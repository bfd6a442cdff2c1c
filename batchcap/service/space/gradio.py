"""What a Gradio app says about itself, and the call batchcap makes of it: pure, tested with golden bytes.

    app = parse_config(GET /config)            api_prefix, protocol, version (and a concurrency limit, if shown)
    endpoints = parse_info(GET {prefix}/info)  named endpoints, their parameters and returns
    endpoint = choose_endpoint(endpoints, "/caption" or None)   None: the one that takes an image, returns text
    plan = plan_call(endpoint, inputs)         every other input typed and in order; which output is the caption
    body = plan.body(file_data(path, ...))     POST {prefix}/call{api_name} -> {"event_id": ...}
    caption = plan.caption(complete_event)     GET {prefix}/call{api_name}/{event_id}: the SSE answer

Measured on gradio 6.31 (issue 20): ``api_prefix`` is ``/gradio_api``; ``/info`` lists ``named_endpoints`` with
``parameters`` (``parameter_name``, ``label``, ``component``, ``type`` as JSON schema, ``parameter_has_default``,
``parameter_default``) and ``returns``; the concurrency limit is not shown (apps run one call at a time unless
they say otherwise: ``default_concurrency_limit`` is 1).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchcap.errors import BadResponse, UsageError, WrongTarget
from batchcap.models import LoadedImage

__all__ = [
    "AppConfig",
    "CallPlan",
    "Endpoint",
    "Param",
    "choose_endpoint",
    "data_url",
    "file_data",
    "parse_config",
    "parse_info",
    "plan_call",
]

#: Components whose value is an image file (what ``--space`` sends the picture as).
IMAGE_COMPONENTS = frozenset({"image", "imageeditor"})
#: The marker Gradio >= 4 reads to treat a dict as a file (``gradio.FileData``).
FILE_META = {"_type": "gradio.FileData"}
_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}


@dataclass(frozen=True, slots=True)
class AppConfig:
    """``GET /config``: where the API lives and how it streams. ``concurrency`` maps api names to the limit the
    app shows (Gradio 6.31 shows none; an app or a later version may)."""

    api_prefix: str
    protocol: str
    version: str
    concurrency: Mapping[str, int]

    def concurrency_of(self, api_name: str) -> int | None:
        return self.concurrency.get(api_name.lstrip("/"))


@dataclass(frozen=True, slots=True)
class Param:
    """One input of an endpoint, as ``/info`` describes it."""

    name: str
    label: str
    component: str
    json_type: str | None  #: the JSON schema's "type" (string, number, integer, boolean), None for others
    has_default: bool
    default: Any

    @property
    def is_image(self) -> bool:
        return self.component.lower() in IMAGE_COMPONENTS

    def describe(self) -> str:
        return f"{self.name} ({self.component})"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One named endpoint: its inputs in order, and which of its outputs are text."""

    api_name: str
    params: tuple[Param, ...]
    text_outputs: tuple[int, ...]
    outputs: int

    @property
    def image_params(self) -> tuple[int, ...]:
        return tuple(i for i, p in enumerate(self.params) if p.is_image)

    @property
    def takes_image_returns_text(self) -> bool:
        return len(self.image_params) == 1 and bool(self.text_outputs)

    def describe(self) -> str:
        args = ", ".join(p.describe() for p in self.params)
        return f"{self.api_name}({args}) -> {self.outputs} output{'s' if self.outputs != 1 else ''}"


def _json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WrongTarget(f"{what} is not JSON ({body[:60]!r}): is this a Gradio app?") from None


def parse_config(body: bytes) -> AppConfig:
    """``GET /config`` -> AppConfig; WrongTarget for anything that is not a Gradio config."""
    data = _json(body, "GET /config")
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        raise WrongTarget("GET /config is not a Gradio config (no dependencies list): is this a Gradio app?")
    prefix = data.get("api_prefix") or ""
    if not isinstance(prefix, str):
        raise WrongTarget(f"GET /config: api_prefix is not a string ({prefix!r})")
    limits: dict[str, int] = {}
    for dep in data.get("dependencies", []):
        if not isinstance(dep, dict):
            continue
        name, limit = dep.get("api_name"), dep.get("concurrency_limit")
        if isinstance(name, str) and isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            limits[name.lstrip("/")] = limit
    return AppConfig(
        api_prefix="/" + prefix.strip("/") if prefix.strip("/") else "",
        protocol=str(data.get("protocol") or "unknown"),
        version=str(data.get("version") or "unknown"),
        concurrency=limits,
    )


def _param(raw: Any, index: int) -> Param:
    if not isinstance(raw, dict):
        raise WrongTarget(f"GET /info: parameter {index} is not an object")
    label = str(raw.get("label") or f"input {index}")
    name = raw.get("parameter_name") or label
    schema = raw.get("type")
    json_type = schema.get("type") if isinstance(schema, dict) and isinstance(schema.get("type"), str) else None
    return Param(
        name=str(name), label=label, component=str(raw.get("component") or "?"), json_type=json_type,
        has_default=bool(raw.get("parameter_has_default", False)), default=raw.get("parameter_default"),
    )


def _is_text(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    python = raw.get("python_type")
    schema = raw.get("type")
    return (isinstance(python, dict) and python.get("type") == "str") or (
        isinstance(schema, dict) and schema.get("type") == "string"
    )


def parse_info(body: bytes) -> dict[str, Endpoint]:
    """``GET {prefix}/info`` -> endpoints by api name (``/caption``)."""
    data = _json(body, "GET /info")
    named = data.get("named_endpoints") if isinstance(data, dict) else None
    if not isinstance(named, dict):
        raise WrongTarget("GET /info has no named_endpoints: is this a Gradio app (version 4 or later)?")
    out: dict[str, Endpoint] = {}
    for api_name, raw in named.items():
        if not isinstance(raw, dict) or not isinstance(api_name, str):
            continue
        params = tuple(_param(p, i) for i, p in enumerate(raw.get("parameters") or []))
        returns = raw.get("returns") or []
        text = tuple(i for i, r in enumerate(returns) if _is_text(r))
        name = api_name if api_name.startswith("/") else "/" + api_name
        out[name] = Endpoint(name, params, text, len(returns))
    return out


def choose_endpoint(endpoints: Mapping[str, Endpoint], api_name: str | None, *, where: str) -> Endpoint:
    """``--space-api`` if given (it must exist, take one image and return text), else the one endpoint that does.
    Several or none is a UsageError that lists them."""
    listing = "; ".join(e.describe() for e in endpoints.values()) or "none"
    if api_name is not None:
        endpoint = endpoints.get(api_name)
        if endpoint is None:
            raise UsageError(f"--space-api {api_name}: {where} has no such endpoint (endpoints: {listing})")
        if not endpoint.takes_image_returns_text:
            raise UsageError(f"--space-api {api_name}: this endpoint does not take one image and return text "
                             f"({endpoint.describe()}); endpoints: {listing}")
        return endpoint
    fits = [e for e in endpoints.values() if e.takes_image_returns_text]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise UsageError(f"{where} has no endpoint that takes one image and returns text (endpoints: {listing}); "
                         "pick another Space, or the app's URL if it is not a Space")
    names = ", ".join(e.api_name for e in fits)
    raise UsageError(f"{where} has {len(fits)} endpoints that take an image and return text ({names}): pass "
                     f"--space-api with one of them (endpoints: {listing})")


def _typed(param: Param, value: str, api_name: str) -> Any:
    """A ``--space-input`` string as the value the input's JSON schema asks for."""
    kind = param.json_type
    bad = UsageError(f"--space-input {param.name}={value!r}: {api_name} takes a {kind} for {param.name}")
    if kind == "string":
        return value
    if kind in ("number", "integer"):
        try:
            number = float(value)
        except ValueError:
            raise bad from None
        if not math.isfinite(number) or (kind == "integer" and not number.is_integer()):
            raise bad
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise bad
    try:  # lists, dicts, sliders without a schema type: JSON if it parses, else the text itself
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One endpoint's call with every input but the image fixed: pure, the same for every image."""

    api_name: str
    values: tuple[Any, ...]
    image_index: int
    output_index: int

    def body(self, image_value: Mapping[str, Any]) -> bytes:
        """``{"data": [...]}`` for ``POST {prefix}/call{api_name}``, the image in its place."""
        data = list(self.values)
        data[self.image_index] = dict(image_value)
        return orjson.dumps({"data": data})

    def caption(self, data: str, *, where: str) -> str:
        """The caption in a ``complete`` event's data (the outputs list); BadResponse if it is not text."""
        try:
            outputs: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BadResponse(f"{where}: the complete event is not JSON ({data[:80]!r})") from None
        if not isinstance(outputs, list) or len(outputs) <= self.output_index:
            raise BadResponse(f"{where}: expected {self.api_name}'s outputs list, got {data[:120]!r}")
        text = outputs[self.output_index]
        if not isinstance(text, str):
            raise BadResponse(f"{where}: output {self.output_index} of {self.api_name} is not text ({text!r:.80})")
        return text.strip()


def plan_call(endpoint: Endpoint, inputs: Sequence[tuple[str, str]]) -> CallPlan:
    """Every input of ``endpoint`` but the image: from ``--space-input`` by name (or label), else its default."""
    given = dict(inputs)
    known = {p.name for p in endpoint.params} | {p.label for p in endpoint.params}
    if unknown := [name for name in given if name not in known]:
        names = ", ".join(p.describe() for p in endpoint.params)
        raise UsageError(f"--space-input {unknown[0]}=...: {endpoint.api_name} has no input of that name "
                         f"(inputs: {names})")
    image_index = endpoint.image_params[0]
    values: list[Any] = []
    for i, param in enumerate(endpoint.params):
        if i == image_index:
            values.append(None)
            if param.name in given or param.label in given:
                raise UsageError(f"--space-input {param.name}=...: that input is the image batchcap sends")
        elif param.name in given or param.label in given:
            raw = given.get(param.name, given.get(param.label, ""))
            values.append(_typed(param, raw, endpoint.api_name))
        elif param.has_default:
            values.append(param.default)
        else:
            raise UsageError(f"{endpoint.api_name} needs its input {param.describe()} and it has no default: pass "
                             f'--space-input {param.name}=VALUE (e.g. --space-input {param.name}="Describe the image.")')
    return CallPlan(endpoint.api_name, tuple(values), image_index, endpoint.text_outputs[0])


def upload_name(image: LoadedImage) -> str:
    """The file name sent with an upload: never the user's own (file names are private and untrusted)."""
    return "image" + _EXT.get(image.mime, ".bin")


def file_data(path: str, image: LoadedImage) -> dict[str, Any]:
    """An uploaded file as Gradio's FileData: the server path that ``/upload`` answered."""
    return {"path": path, "orig_name": upload_name(image), "meta": FILE_META}


def data_url(image: LoadedImage) -> dict[str, Any]:
    """The image inline, as a ``data:`` URL in FileData (no upload round trip; a third more bytes)."""
    encoded = base64.b64encode(image.data).decode("ascii")
    return {"url": f"data:{image.mime};base64,{encoded}", "orig_name": upload_name(image), "meta": FILE_META}
