"""What a bench measures: the targets, named and parsed from ``NAME=SPEC``, and the knobs of the sweep.

Targets are parsed into the same ``RunConfig`` that ``batchcap run`` uses, so each is called as a run would call
it. Neither holds a secret: tokens are found per target when the bench starts, and never recorded.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchcap.config import DEFAULT_API_BASE, RunConfig, load_profile
from batchcap.errors import ConfigError, UsageError

__all__ = ["DEMO_MODEL", "BenchSettings", "Target", "parse_target", "resolve_targets"]

DEMO_MODEL = "Salesforce/blip-image-captioning-base"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


@dataclass(frozen=True, slots=True)
class Target:
    """One named thing to benchmark. ``spec`` is the text after ``NAME=``; it holds no secret."""

    name: str
    spec: str
    cfg: RunConfig
    price_per_hour: float | None = None
    token_file: Path | None = None


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """Every knob of a bench; the defaults are those of a real (non-demo) run."""

    targets: tuple[Target, ...]
    images_dir: Path
    images: int = 50
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    arrival_rates: tuple[float, ...] = ()
    requests: int = 200
    duration: float = 60.0
    warmup: int = 5
    slo: float = 2.0
    timeout: float | None = None  #: per request; None = each target's own (its profile's, else 60 s)
    cold_start_timeout: float = 300.0
    max_time: float = 900.0
    max_in_flight: int = 256
    throttle_pause: float = 1.0
    max_image_mb: float = 20.0
    seed: int = 0
    demo: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  #: recorded in bench.json as given

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON values, secret-free (targets by their public config)."""
        out: dict[str, Any] = {
            name: (str(value) if isinstance(value, Path) else value)
            for name, value in (
                ("images_dir", self.images_dir), ("images", self.images), ("concurrency", list(self.concurrency)),
                ("arrival_rates", list(self.arrival_rates)), ("requests", self.requests),
                ("duration_s", self.duration), ("warmup", self.warmup), ("slo_p95_s", self.slo),
                ("timeout_s", self.timeout), ("cold_start_timeout_s", self.cold_start_timeout),
                ("max_time_s", self.max_time), ("max_in_flight", self.max_in_flight),
                ("throttle_pause_s", self.throttle_pause), ("max_image_mb", self.max_image_mb),
                ("seed", self.seed), ("demo", self.demo),
            )
        }
        out["targets"] = [
            {"name": t.name, "spec": t.spec, "price_per_hour": t.price_per_hour, "config": t.cfg.public_dict()}
            for t in self.targets
        ]
        return {**out, **self.extra}


def parse_target(text: str, *, api_base: str = DEFAULT_API_BASE) -> Target:
    """``NAME=hf:MODEL`` | ``NAME=https://endpoint`` | ``NAME=openai:MODEL@BASE_URL`` | ``[NAME=]profile.toml``."""
    name, sep, spec = text.partition("=")
    if not sep or not _NAME.match(name) or name.startswith(("http", "hf:", "openai:")):
        if text.endswith(".toml"):  # a bare profile is named after its file
            name, spec = Path(text).stem, text
        else:
            raise UsageError(
                f"--target {text!r}: expected NAME=SPEC, e.g. free=hf:{DEMO_MODEL}, "
                "endpoint=https://xyz.endpoints.huggingface.cloud, vlm=openai:MODEL@https://router.huggingface.co/v1 "
                "or ep=configs/endpoint.toml"
            )
    if spec.startswith(("hf:", "hf-json:")):
        api, _, model = spec.partition(":")
        if not model:
            raise UsageError(f"--target {name}={spec}: the model id is missing after '{api}:'")
        cfg = RunConfig(api="hf-json" if api == "hf-json" else "hf", model=model, api_base=api_base)
    elif spec.startswith(("http://", "https://")):
        cfg = RunConfig(api="hf", endpoint=spec)
    elif spec.startswith("openai:"):
        model, at, base = spec.removeprefix("openai:").partition("@")
        if not model or not at or not base.startswith(("http://", "https://")):
            raise UsageError(f"--target {name}={spec}: expected openai:MODEL@BASE_URL, e.g. "
                             "openai:Qwen/Qwen2.5-VL-7B-Instruct@https://router.huggingface.co/v1")
        cfg = RunConfig(api="openai", model=model, base_url=base)
    elif spec.endswith(".toml") or Path(spec).is_file():
        cfg = RunConfig().merged(load_profile(Path(spec)))
    else:
        raise UsageError(f"--target {name}={spec}: SPEC must start with hf:, http(s)://, openai: or be a .toml profile")
    try:
        cfg.validate()
    except ConfigError as exc:
        raise UsageError(f"--target {name}: {exc}") from None
    return Target(name=name, spec=spec, cfg=cfg, token_file=cfg.token_file)


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
        raise UsageError(f"--price-per-hour: expected dollars per hour, e.g. endpoint=0.60 (got {text!r})") from None
    if not (value >= 0 and math.isfinite(value)):
        raise UsageError(f"--price-per-hour must be >= 0 dollars (got {text!r}); 0 means free")
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
