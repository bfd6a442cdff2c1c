"""What a bench measures: the targets, named and parsed from ``NAME=SPEC``, and the knobs of the sweep.

Targets are parsed into the same ``RunConfig`` that ``batchcap run`` uses, so each is called as a run would call
it. Neither holds a secret: tokens are found per target when the bench starts, and never recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchcap.config.targets import DEMO_MODEL, Target, parse_target, resolve_targets
from batchcap.flow.budget import TokenPrice
from batchcap.prepare.settings import PrepareSettings

__all__ = ["DEMO_MODEL", "BenchSettings", "Target", "parse_target", "resolve_targets"]


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
    #: How each image becomes what is sent: run's own preparation and flags (every target gets these bytes).
    prepare: PrepareSettings = field(default_factory=PrepareSettings)
    extra: dict[str, Any] = field(default_factory=dict)  #: recorded in bench.json as given
    token_price: TokenPrice | None = None  #: chat targets' USD per 1M tokens (default: each one's /v1/models)

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
        p = self.prepare
        out["prepare"] = {"max_side": p.max_side, "jpeg_quality": p.jpeg_quality, "keep_metadata": p.keep_metadata,
                          "max_upload_bytes": p.max_upload_bytes, "max_pixels": p.max_pixels}
        tp = self.token_price
        out["token_price"] = None if tp is None else {"input": tp.input, "output": tp.output}
        out["targets"] = [
            {"name": t.name, "spec": t.spec, "price_per_hour": t.price_per_hour, "config": t.cfg.public_dict()}
            for t in self.targets
        ]
        return {**out, **self.extra}
