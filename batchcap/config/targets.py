"""Named targets, ``NAME=SPEC``, for every command that talks to more than one service (bench, run).

SPEC: ``hf:MODEL`` (the serverless API), ``hf-json:MODEL``, an Endpoint URL, ``endpoint:NAMESPACE/NAME[@API]``
(an Endpoint by name, through the management API), ``openai:MODEL@BASE_URL`` (a chat server),
``space:OWNER/NAME[@/API_NAME]`` (a Gradio Space, or ``space:URL`` for any Gradio app), or a
``configs/*.toml`` profile. Each is parsed into the same ``RunConfig`` a single-target run
uses (a profile keeps its own limits; a bare SPEC takes the command's). No secret is held: tokens are found per target when the command starts, and never recorded.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from batchcap.errors import ConfigError, UsageError
from batchcap.redact import shown
from batchcap.service.settings import DEFAULT_API_BASE, DEFAULT_ENDPOINTS_API, TargetSettings

from .profile import profile_config
from .runconfig import RunConfig

__all__ = ["DEMO_MODEL", "Target", "parse_target", "resolve_targets"]

DEMO_MODEL = "Salesforce/blip-image-captioning-base"
_SPEC_PREFIXES = ("hf:", "hf-json:", "http://", "https://", "openai:", "endpoint:")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


@dataclass(frozen=True, slots=True)
class Target:
    """One named service to caption with or benchmark. ``spec`` is the text after ``NAME=``; it holds no secret."""

    name: str
    spec: str
    cfg: RunConfig
    price_per_hour: float | None = None
    token_file: Path | None = None
    profile: bool = False  #: a ``.toml`` profile: it keeps its own limits in a run with several targets


def parse_target(text: str, *, api_base: str = DEFAULT_API_BASE) -> Target:
    """``NAME=hf:MODEL`` | ``NAME=https://endpoint`` | ``NAME=openai:MODEL@BASE_URL`` | ``[NAME=]profile.toml``
    | ``NAME=endpoint:NAMESPACE/NAME[@MANAGEMENT_API]`` (an Endpoint by name: woken through the Endpoints API)
    | ``NAME=space:OWNER/NAME[@/API_NAME]`` or ``NAME=space:URL[@/API_NAME]`` (a Gradio app, issue 20).

    Without ``NAME=`` a profile is named after its file and any other SPEC is named ``target`` (one of them)."""
    name, sep, spec = text.partition("=")
    if not sep or not _NAME.match(name) or name.startswith(("http", "hf:", "openai:", "endpoint:", "space:")):
        if text.endswith(".toml"):  # a bare profile is named after its file
            name, spec = Path(text).stem, text
        elif text.startswith(_SPEC_PREFIXES):  # one unnamed target (check --target hf:MODEL): "target"
            name, spec = "target", text
        else:
            raise UsageError(
                f"--target {shown(text)!r}: expected NAME=SPEC, e.g. free=hf:{DEMO_MODEL}, "
                "endpoint=https://xyz.endpoints.huggingface.cloud, vlm=openai:MODEL@https://router.huggingface.co/v1 "
                "or ep=configs/endpoint.toml"
            )
    try:
        return _parse_spec(name, spec, api_base)
    except ConfigError as exc:
        if str(exc).startswith("--target"):
            raise
        raise ConfigError(f"--target {name}: {exc}") from None


def _parse_spec(name: str, spec: str, api_base: str) -> Target:
    if spec.startswith(("hf:", "hf-json:")):
        api, _, model = spec.partition(":")
        if not model:
            raise UsageError(f"--target {name}={shown(spec)}: the model id is missing after '{api}:'")
        cfg = _bare(api="hf-json" if api == "hf-json" else "hf", model=model, api_base=api_base)
    elif spec.startswith(("http://", "https://")):
        cfg = _bare(api="hf", endpoint=spec)
    elif spec.startswith("endpoint:"):
        endpoint_name, at, api = spec.removeprefix("endpoint:").partition("@")
        if at and not api.startswith(("http://", "https://")):
            raise UsageError(f"--target {name}={shown(spec)}: expected endpoint:NAMESPACE/NAME[@https://MANAGEMENT_API]")
        cfg = _bare(api="hf", endpoint_name=endpoint_name, endpoints_api=api or DEFAULT_ENDPOINTS_API)
    elif spec.startswith("space:"):
        space, at, api = spec.removeprefix("space:").rpartition("@/")
        if not at:
            space, api = api, ""
        if not space:
            raise UsageError(f"--target {name}={shown(spec)}: expected space:OWNER/NAME[@/API_NAME] or space:URL")
        cfg = _bare(space=space, space_api="/" + api if at else None)
    elif spec.startswith("openai:"):
        model, at, base = spec.removeprefix("openai:").partition("@")
        if not model or not at or not base.startswith(("http://", "https://")):
            raise UsageError(f"--target {name}={shown(spec)}: expected openai:MODEL@BASE_URL, e.g. "
                             "openai:Qwen/Qwen2.5-VL-7B-Instruct@https://router.huggingface.co/v1")
        cfg = _bare(api="openai", model=model, base_url=base)
    elif spec.endswith(".toml") or Path(spec).is_file():
        cfg = profile_config(Path(spec))
    else:
        raise UsageError(f"--target {name}={shown(spec)}: SPEC must start with hf:, http(s)://, openai:, endpoint:, "
                         "space: or be a .toml profile")
    cfg.validate()
    return Target(name=name, spec=spec, cfg=cfg, token_file=cfg.target.token_file, profile=spec.endswith(".toml"))


def _bare(**target: object) -> RunConfig:
    """A target given as SPEC alone: its service, every other setting the default (the command's, for a run)."""
    return RunConfig(target=TargetSettings(**target))  # type: ignore[arg-type]


def _named_values(values: Sequence[str], names: Sequence[str], flag: str) -> tuple[dict[str, str], str | None]:
    """Split ``NAME=VALUE`` flags by target; a value without a known ``NAME=`` applies to every target."""
    named: dict[str, str] = {}
    everyone: str | None = None
    for text in values:
        name, sep, value = text.partition("=")
        if sep and name in names:
            named[name] = value
        elif sep and _NAME.match(name) and flag == "--price-per-hour":
            raise UsageError(f"{flag} {text}: no target is named {name!r} (targets: {', '.join(names)})")
        else:
            everyone = text
    return named, everyone


def _price(text: str) -> float:
    try:
        value = float(text.removeprefix("$"))
    except ValueError:
        raise UsageError(f"--price-per-hour: expected dollars per hour, e.g. endpoint=0.60 (got {shown(text)!r})") from None
    if not (value >= 0 and math.isfinite(value)):
        raise UsageError(f"--price-per-hour must be >= 0 dollars (got {shown(text)!r}); 0 means free")
    return value


def resolve_targets(
    specs: Sequence[str], *, api_base: str, token_files: Sequence[str] = (), prices: Sequence[str] = ()
) -> tuple[Target, ...]:
    """Parse ``--target``s and attach their ``--token-file`` and ``--price-per-hour``."""
    targets = [parse_target(s, api_base=api_base) for s in specs]
    names = [t.name for t in targets]
    if dup := [n for n, c in Counter(names).items() if c > 1]:
        raise UsageError(f"--target names must be unique; {', '.join(dup)} appears twice")
    tokens, token_all = _named_values(token_files, names, "--token-file")
    price_by, price_all = _named_values(prices, names, "--price-per-hour")
    if price_all is not None:
        if len(targets) != 1:
            raise UsageError(f"--price-per-hour {price_all}: say which target, e.g. --price-per-hour {names[0]}=0.60")
        price_by[names[0]] = price_all
    out = []
    for t in targets:
        token_path = tokens.get(t.name, token_all)
        out.append(
            replace(
                t,
                price_per_hour=_price(price_by[t.name]) if t.name in price_by else None,
                token_file=Path(os.path.expanduser(token_path)) if token_path else t.token_file,
            )
        )
    return tuple(out)
