"""``TargetSettings``: who answers (the service shape, its URL, the model, what is asked), and ``RoutingSettings``
(several named targets in one run). Declared once here; ``RunConfig.target`` / ``.routing`` carry them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from batchcap.errors import ConfigError
from batchcap.redact import looks_like_token
from batchcap.settings import (
    check_choice,
    check_number,
    check_url,
    check_whole,
    parse_float,
    parse_int,
    setting,
)

if TYPE_CHECKING:
    from batchcap.service.space.address import SpaceSettings

__all__ = [
    "AFTER_RUN_CHOICES",
    "API_CHOICES",
    "DEFAULT_API_BASE",
    "DEFAULT_ENDPOINTS_API",
    "DEFAULT_PROMPT",
    "UNUSED_BY_API",
    "AfterRun",
    "Api",
    "RoutingSettings",
    "TargetSettings",
    "parse_endpoint_name",
]

DEFAULT_API_BASE = "https://router.huggingface.co/hf-inference"
DEFAULT_ENDPOINTS_API = "https://api.endpoints.huggingface.cloud/v2"
DEFAULT_PROMPT = "Write a short, factual one-sentence caption for this image."
API_CHOICES = ("hf", "hf-json", "openai")
Api = Literal["hf", "hf-json", "openai"]
#: What each service shape sends nothing of: a flag for one of these changes nothing for such a target (raw
#: bytes carry no text; hf-json carries ``parameters`` only; a chat request has its own fields, no ``parameters``).
UNUSED_BY_API: dict[str, tuple[str, ...]] = {
    "hf": ("prompt", "max_tokens", "temperature", "parameters"),
    "hf-json": ("prompt", "max_tokens", "temperature"),
    "openai": ("parameters",),
    "space": ("prompt", "max_tokens", "temperature", "parameters"),  # a Space's inputs: --space-input NAME=VALUE
}
AFTER_RUN_CHOICES = ("pause", "scale-to-zero")
AfterRun = Literal["pause", "scale-to-zero"]
ROUTE_CHOICES = ("failover", "spread")
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def _text(value: Any, name: str = "") -> str:
    return str(value)


def _optional_text(value: Any, name: str = "") -> str | None:
    text = str(value).strip()
    return text or None  # an empty string in a profile ("endpoint = ''") means "not set"


def _optional_path(value: Any, name: str = "") -> Path | None:
    from batchcap.source.settings import parse_path

    return None if value in (None, "") else parse_path(value)


def _table(value: Any, name: str = "parameters") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a table of generation parameters (got {value!r})")
    return dict(value)


def _strings(value: Any, name: str = "") -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of NAME=... strings (got {value!r})")
    return tuple(value)


def _inputs(value: Any, name: str = "space_inputs") -> tuple[str, ...]:
    """``--space-input NAME=VALUE`` (repeatable), or a profile's list of them or ``[space_inputs]`` table."""
    if isinstance(value, Mapping):
        return tuple(f"{key}={text}" for key, text in value.items())
    return _strings(value, name)


def parse_endpoint_name(spec: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` -> (namespace, name); ``ConfigError`` with the expected form otherwise."""
    spec = spec.strip()
    if not _ENDPOINT_NAME.fullmatch(spec):
        raise ConfigError(
            f"--endpoint-name must be NAMESPACE/NAME, e.g. acme/captioner (your user or org, then the "
            f"Endpoint's name as the Endpoints page shows it; got {spec!r})"
        )
    namespace, name = spec.split("/")
    return namespace, name


def _host(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (never written anywhere)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
    return url


@dataclass(frozen=True, slots=True)
class TargetSettings:
    """One service to caption with. Holds no secret: the token is found when a command starts (``auth``)."""

    api: Api = setting("hf", parse=_text)
    model: str | None = setting(None, parse=_optional_text)
    api_base: str = setting(DEFAULT_API_BASE, parse=_text)
    endpoint: str | None = setting(None, parse=_optional_text)
    base_url: str | None = setting(None, parse=_optional_text)
    prompt: str = setting(DEFAULT_PROMPT, parse=_text)
    max_tokens: int = setting(64, parse=parse_int)
    temperature: float = setting(0.0, parse=parse_float)
    parameters: Mapping[str, Any] | None = setting(None, parse=_table)
    token_file: Path | None = setting(None, parse=_optional_path)
    #: ``NAMESPACE/NAME`` of an Inference Endpoint to look up, wake and use (its URL replaces ``endpoint``)
    endpoint_name: str | None = setting(None, parse=_optional_text)
    endpoints_api: str = setting(DEFAULT_ENDPOINTS_API, parse=_text)
    #: put the named Endpoint to sleep when the run ends, is interrupted or aborts
    after_run: AfterRun | None = setting(None, parse=_optional_text)
    #: a Gradio app to caption through (issue 20, ``service.space``): OWNER/NAME (a Space), a Space page URL or
    #: any Gradio app's URL; its endpoint (None: the one that takes an image and returns text); its other inputs
    space: str | None = setting(None, parse=_optional_text)
    space_api: str | None = setting(None, parse=_optional_text)
    space_inputs: tuple[str, ...] = setting((), parse=_inputs)

    def __post_init__(self) -> None:
        check_choice(self.api, "api", API_CHOICES)
        check_whole(self.max_tokens, "max_tokens", minimum=1)
        check_number(self.temperature, "temperature", at_least=0, at_most=2)
        if isinstance(self.token_file, str):
            object.__setattr__(self, "token_file", _optional_path(self.token_file))
        for name in ("endpoint", "base_url", "api_base", "endpoints_api"):
            value = getattr(self, name)
            if value:
                check_url(value, name)
        if self.model is not None and looks_like_token(self.model):  # never echoed, never in a journal line
            raise ConfigError("--model: this looks like a token, not a model id: set HF_TOKEN for the token instead")
        if self.endpoint_name is not None:
            parse_endpoint_name(self.endpoint_name)
        if self.after_run is not None:
            check_choice(self.after_run, "after_run", AFTER_RUN_CHOICES)
        if not isinstance(self.space_inputs, tuple):
            object.__setattr__(self, "space_inputs", _inputs(self.space_inputs))
        if self.space is not None:
            self.space_settings()  # ConfigError for the name or URL, UsageError for a malformed --space-input

    def space_settings(self) -> SpaceSettings | None:
        """The Gradio app to caption through (``--space``), or None for every other target."""
        if self.space is None:
            return None
        from batchcap.service.space.address import SpaceSettings, parse_inputs

        return SpaceSettings(self.space, self.space_api, parse_inputs(self.space_inputs))

    def require_complete(self) -> None:
        """The checks that need the whole target: which of --model / --endpoint / --base-url / --space it names."""
        if self.space is not None:
            others = [flag for flag, given in (("--endpoint", self.endpoint), ("--base-url", self.base_url),
                                               ("--endpoint-name", self.endpoint_name), ("--model", self.model))
                      if given]
            if others:
                raise ConfigError(f"give --space or {others[0]}, not both (a Space is a target of its own)")
            return
        if self.space_api is not None or self.space_inputs:
            raise ConfigError("--space-api and --space-input need --space OWNER/NAME (or a Gradio app's URL), or a "
                              "--target NAME=space:OWNER/NAME")
        if self.api == "openai":
            if not self.base_url:
                raise ConfigError("--api openai needs --base-url (e.g. https://router.huggingface.co/v1)")
            if not self.model:
                raise ConfigError("--api openai needs --model (the model id the server serves)")
        elif not self.endpoint and not self.endpoint_name and not self.model:
            raise ConfigError("no target: pass --model MODEL_ID (serverless API), --endpoint URL (Inference "
                              "Endpoint), --api openai --base-url URL --model ID, or --target NAME=SPEC")
        if self.endpoint_name is not None:
            if self.endpoint:
                raise ConfigError("give --endpoint URL or --endpoint-name NAMESPACE/NAME, not both")
            if self.api == "openai":
                raise ConfigError("--endpoint-name works with --api hf or hf-json; for an OpenAI-style Endpoint "
                                  "pass --base-url URL/v1 and wake it by hand")
        elif self.after_run is not None:
            raise ConfigError(f"--{self.after_run}-after needs --endpoint-name NAMESPACE/NAME (the Endpoint to put "
                              "to sleep)")

    @property
    def url(self) -> str:
        """The URL each request goes to ("" for a named Endpoint until the management API gave its URL; a Space's
        base URL, under which its routes are)."""
        if self.space is not None:
            from batchcap.service.space.address import space_url

            return space_url(self.space)
        if self.api == "openai":
            base = (self.base_url or "").rstrip("/")
            return base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        if self.endpoint:
            return self.endpoint
        if self.endpoint_name:
            return ""
        return f"{self.api_base.rstrip('/')}/models/{self.model}"

    @property
    def serverless(self) -> bool:
        """The shared serverless API (as opposed to an Endpoint or a chat server the user runs or pays for)."""
        return self.api != "openai" and not self.endpoint and not self.endpoint_name and self.space is None

    def unused(self, given: Iterable[str]) -> list[str]:
        """Which of the settings ``given`` this target's requests leave out (see ``UNUSED_BY_API``)."""
        unused = UNUSED_BY_API[self.shape]
        return [name for name in given if name in unused]

    @property
    def shape(self) -> str:
        """The request shape: ``space`` for a Gradio app, else ``api`` (hf, hf-json, openai)."""
        return "space" if self.space is not None else self.api

    @property
    def takes_prompt(self) -> bool:
        """Whether a prompt reaches the model (chat targets); raw-bytes targets have none (a Space's prompt, if
        any, is one of its ``--space-input``s)."""
        return self.api == "openai" and self.space is None

    @property
    def label(self) -> str:
        """A short, secret-free name of the target, written into every journal line."""
        if (space := self.space_settings()) is not None:
            return space.target
        if self.api == "openai":
            return f"openai:{self.model}@{_host(self.base_url or '')}"
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            port = f":{parts.port}" if parts.port else ""
            return f"endpoint:{parts.scheme}://{parts.hostname}{port}{parts.path}"
        if self.endpoint_name:
            return f"endpoint:{self.endpoint_name}"
        return f"{self.api}:{self.model}@{_host(self.api_base)}"


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Several targets in one run (``--target NAME=SPEC``, repeatable): failover or spread."""

    targets: tuple[str, ...] = setting((), parse=_strings)
    route: Literal["failover", "spread"] = setting("failover", parse=_text)
    #: ``NAME=DOLLARS`` per target, for the per-target cost in the summary
    price_per_hour: tuple[str, ...] = setting((), parse=_strings)

    def __post_init__(self) -> None:
        for name in ("targets", "price_per_hour"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, _strings(value, name))
        check_choice(self.route, "route", ROUTE_CHOICES)
