"""``batchcap bench``: is a paid Endpoint worth it against the free API, for these images, at what concurrency?

Each target is benchmarked in turn on the same images (loaded once, into memory) with the project's own
``CaptionClient`` and protocol adapters, so the bench measures what ``batchcap run`` would get:

    cold start (time to first caption) -> closed-loop sweep over --concurrency -> open-loop sweep over
    --arrival-rate -> summaries (benchstats) -> bench.json, bench.md, bench.png (report)

Every loop is bounded in requests and seconds, and the whole bench by ``--max-time``, split fairly between
the targets still to run. ``--demo`` starts two local emulators (a rate-limited, cold-starting "free API" and
a fast "endpoint") so the whole thing runs offline in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from .benchstats import (
    BenchResult,
    Mode,
    StepRecord,
    TargetResult,
    describe_errors,
    knee,
    summarize_step,
    throttle_summary,
    verdict,
)
from .client import CaptionClient
from .config import DEFAULT_API_BASE, RunConfig, Secret, find_token, load_profile
from .errors import (
    APIError,
    AuthError,
    BatchcapError,
    ConfigError,
    ModelLoading,
    RateLimited,
    ServerError,
    TransportError,
    WrongTarget,
)
from .images import load_batch
from .loadgen import Outcome, Send, StepRun, closed_loop, open_loop, poisson_schedule, probe_until_ok
from .models import LoadedImage
from .protocols import make_adapter
from .sources import scan

__all__ = [
    "BenchAborted",
    "BenchSettings",
    "Target",
    "UsageError",
    "add_arguments",
    "demo_settings",
    "demo_targets",
    "parse_target",
    "resolve_targets",
    "run_bench",
    "run_from_args",
    "settings_from_args",
]

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 3
DEMO_MODEL = "Salesforce/blip-image-captioning-base"
DEMO_ENDPOINT_PRICE = 0.60  # made up, in the range of a small CPU/T4 Endpoint
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class BenchAborted(BatchcapError):
    """A target refused the token or does not exist: every request would fail the same way."""


class UsageError(ConfigError):
    """A flag is malformed (exit 2), as opposed to a resource that cannot be used (exit 3)."""


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


# ---------------------------------------------------------------------------------------------------------------
# Targets.


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


# ---------------------------------------------------------------------------------------------------------------
# The run.


def _kind(exc: APIError) -> Any:
    if isinstance(exc, RateLimited):
        return "429"
    if isinstance(exc, ModelLoading):
        return "503"
    if isinstance(exc, ServerError):
        return "5xx"
    if isinstance(exc, TransportError):
        return "timeout"
    return "other"


def _pause(exc: APIError, throttle_pause: float) -> float:
    """How long a closed-loop worker rests after this error: the server's hint, else ``throttle_pause``."""
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else throttle_pause
    if isinstance(exc, ModelLoading):
        return min(exc.estimated_time or throttle_pause, throttle_pause)
    return 0.0


def _abort_message(target: Target, exc: APIError, token_source: str) -> str:
    if isinstance(exc, AuthError):
        if token_source == "none":
            return (f"target {target.name}: {target.cfg.target} requires a token (HTTP {exc.status}) and none "
                    f"was found: set HF_TOKEN or pass --token-file {target.name}=PATH")
        return (f"target {target.name}: the token from {token_source} was refused (HTTP {exc.status}); "
                f"check it or pass --token-file {target.name}=PATH")
    return f"target {target.name}: {exc.message} (check the URL or model: {target.cfg.target})"


def _sender(
    client: CaptionClient, images: Sequence[LoadedImage], sizes: Sequence[int], target: Target, token_source: str,
    throttle_pause: float,
) -> Send:
    """``send(i)``: caption image ``i mod n`` once; errors become data, except those that doom the target."""

    async def send(i: int) -> Outcome:
        k = i % len(images)
        try:
            reply = await client.caption(images[k])
        except (AuthError, WrongTarget) as exc:
            raise BenchAborted(_abort_message(target, exc, token_source)) from None
        except APIError as exc:
            return Outcome(False, _kind(exc), exc.status, sizes[k], _pause(exc, throttle_pause), exc.message)
        return Outcome(True, None, reply.status, reply.bytes_sent)

    return send


def _record(mode: Mode, level: float, run: StepRun, warm: StepRun, price: float | None) -> StepRecord:
    stats = summarize_step(
        run.samples, mode=mode, level=level, price_per_hour=price, window_s=run.window_s, unsent=run.unsent,
        abandoned=run.abandoned, stopped_by=run.stopped_by, warmup_samples=warm.samples,
    )
    return StepRecord(stats, run.samples, warm.samples)


def _step_line(name: str, rec: StepRecord) -> str:
    s = rec.stats
    what = f"c={s.level:g}" if s.mode == "closed" else f"{s.level:g}/s"
    lat = f"p50 {s.latency.p50:.3f} s p95 {s.latency.p95:.3f} s" if s.latency else "no successes"
    err = f", {describe_errors(s.errors)}" if s.failed else ""
    return f"  {name} {what}: {s.ok}/{s.requests} ok, {s.images_per_s:.1f} img/s, {lat}{err} ({s.window_s:.1f} s)"


async def _bench_target(
    target: Target, images: Sequence[LoadedImage], settings: BenchSettings, token: Secret | None,
    token_source: str, *, until: float, log: Callable[[str], None], clock: Callable[[], float],
) -> TargetResult:
    cfg = target.cfg
    adapter = make_adapter(cfg)
    sizes = [len(adapter.build(img).body) for img in images]
    timeout = settings.timeout or cfg.timeout
    connections = max(max(settings.concurrency, default=1), settings.max_in_flight if settings.arrival_rates else 1)
    notes: list[str] = []
    steps: list[StepRecord] = []
    log(f"batchcap bench: {target.name} -> {cfg.target} (token: {token_source})")
    async with CaptionClient(cfg.url, adapter, token=token, timeout=timeout, connections=connections) as client:
        send = _sender(client, images, sizes, target, token_source, settings.throttle_pause)
        cold = await probe_until_ok(send, give_up_after=max(0.0, min(settings.cold_start_timeout, until - clock())))
        if cold.ok:
            log(f"  {target.name}: first caption after {cold.seconds:.2f} s "
                f"({cold.attempts} request{'s' if cold.attempts != 1 else ''})")
        else:
            last = f"; last error: {cold.last_error}" if cold.last_error else ""
            notes.append(f"no caption within {settings.cold_start_timeout:g} s of the first request "
                         f"({cold.attempts} requests: {describe_errors(cold.errors)}{last}); sweep skipped")
            log(f"  {target.name}: {notes[-1]}")
        loops: list[tuple[Mode, float]] = [("closed", c) for c in settings.concurrency] if cold.ok else []
        loops += [("open", r) for r in settings.arrival_rates] if cold.ok else []
        skip_closed = False
        for mode, level in loops:
            if mode == "closed" and skip_closed:
                continue
            if clock() >= until:
                what = f"concurrency {level:g}" if mode == "closed" else f"{level:g} arrivals/s"
                notes.append(f"time limit reached (--max-time): steps from {what} on were not run")
                break
            common: dict[str, Any] = {"duration": settings.duration, "grace": timeout, "deadline": until, "clock": clock}
            if mode == "closed":
                c = int(level)
                warm = await closed_loop(send, concurrency=c, count=settings.warmup, **common)
                run = await closed_loop(send, concurrency=c, count=settings.requests, **common)
            else:  # every target gets the same arrival times for the same rate: a like-for-like comparison
                seed = settings.seed * 1000 + 2 * settings.arrival_rates.index(level)
                warm_at = poisson_schedule(level, count=settings.warmup, duration=settings.duration, seed=seed)
                at = poisson_schedule(level, count=settings.requests, duration=settings.duration, seed=seed + 1)
                warm = await open_loop(send, warm_at, max_in_flight=settings.max_in_flight, **common)
                run = await open_loop(send, at, max_in_flight=settings.max_in_flight, **common)
            steps.append(_record(mode, level, run, warm, target.price_per_hour))
            log(_step_line(target.name, steps[-1]))
            if mode == "closed" and steps[-1].stats.ok == 0 and level != max(settings.concurrency):
                skip_closed = True
                notes.append(f"nothing succeeded at concurrency {level:g}: higher concurrency was not tried")
                log(f"  {target.name}: {notes[-1]}")
    main = [s.stats for s in steps if s.stats.mode == "closed"] or [s.stats for s in steps]
    return TargetResult(
        name=target.name,
        description=cfg.target,
        url=cfg.public_dict()["url"],
        api=cfg.api,
        price_per_hour=target.price_per_hour,
        token_source=token_source,
        cold_start=cold,
        steps=tuple(steps),
        knee=knee(main, settings.slo),
        throttle=throttle_summary(main),
        notes=tuple(notes),
    )


async def _load_images(settings: BenchSettings) -> tuple[list[LoadedImage], dict[str, Any]]:
    """The first ``settings.images`` readable images, in memory: every target gets exactly these bytes."""
    max_bytes = int(settings.max_image_mb * 1024 * 1024)

    def load() -> list[Any]:
        jobs = list(islice(scan(settings.images_dir), settings.images))
        return load_batch(jobs, max_bytes=max_bytes)

    loaded = await anyio.to_thread.run_sync(load)
    images = [x for x in loaded if isinstance(x, LoadedImage)]
    skipped = [f"{job.path}: {err}" for job, err in (x for x in loaded if not isinstance(x, LoadedImage))]
    if not images:
        raise ConfigError(f"no readable images in {settings.images_dir}" + (f" ({skipped[0]})" if skipped else ""))
    sizes = sorted(len(i.data) for i in images)
    info = {
        "dir": str(settings.images_dir),
        "count": len(images),
        "bytes_total": sum(sizes),
        "bytes_median": sizes[len(sizes) // 2],
        "types": dict(Counter(i.mime for i in images)),
        "skipped": skipped,
    }
    return images, info


def _leaf(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            if (found := _leaf(sub, kind)) is not None:
                return found
    return None


async def run_bench(
    settings: BenchSettings,
    *,
    tokens: Mapping[str, tuple[Secret | None, str]] | None = None,
    log: Callable[[str], None] = lambda line: None,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchResult:
    """Benchmark every target in turn; raise BenchAborted when one refuses the token or does not exist.

    ``tokens`` maps target names to ``(token, source description)``; by default each target's token is found
    as ``batchcap run`` finds it (``--token-file``, ``HF_TOKEN``, the huggingface_hub token file).
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = clock()
    deadline = t0 + settings.max_time
    tokens = dict(tokens) if tokens is not None else {t.name: find_token(t.token_file) for t in settings.targets}
    images, image_info = await _load_images(settings)
    log(f"batchcap bench: {len(images)} images ({image_info['bytes_total'] / 1e6:.1f} MB) from {settings.images_dir}")
    results: list[TargetResult] = []
    stopped: str | None = None
    for k, target in enumerate(settings.targets):
        remaining = deadline - clock()
        until = clock() + max(0.0, remaining) / (len(settings.targets) - k)  # a fair share of what is left
        token, source = tokens.get(target.name, (None, "none"))
        try:
            results.append(await _bench_target(target, images, settings, token, source, until=until, log=log,
                                               clock=clock))
        except BaseExceptionGroup as group:
            if (aborted := _leaf(group, BenchAborted)) is not None:
                raise aborted from None
            raise
        if any("time limit" in n for n in results[-1].notes) or clock() >= deadline:
            stopped = "max_time"
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return BenchResult(
        targets=tuple(results),
        slo_s=settings.slo,
        verdict=verdict(results, settings.slo),
        config=settings.public_dict(),
        versions=_versions(loop),
        machine=_machine(),
        images=image_info,
        started_at=started_at,
        elapsed_s=clock() - t0,
        stopped=stopped,
    )


def _versions(loop: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"batchcap": __version__, "python": platform.python_version(), "event_loop": loop}
    for dist in ("aiohttp", "anyio", "orjson", "pillow", "matplotlib", "uvloop"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["git_commit"] = _git_commit()
    return out


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
    }  # no hostname or user name: bench.json gets shared


# ---------------------------------------------------------------------------------------------------------------
# Demo: two emulators configured like the real services.


def demo_settings() -> tuple[Any, Any]:
    """The "free API" (rate-limited, cold-starting, slower) and the "endpoint" (unlimited, faster)."""
    from .emulator import EmulatorSettings

    free = EmulatorSettings(rate=4.0, burst=2, cold_start=2.0, latency=0.25, latency_jitter=0.1, name="free-api")
    endpoint = EmulatorSettings(latency=0.08, latency_jitter=0.02, name="endpoint")
    return free, endpoint


@contextlib.asynccontextmanager
async def demo_targets() -> AsyncIterator[tuple[Target, ...]]:
    """Start both emulators on free loopback ports; yield the targets that point at them."""
    from .emulator import start_emulator

    free_settings, endpoint_settings = demo_settings()
    async with await start_emulator(free_settings) as free, await start_emulator(endpoint_settings) as endpoint:
        base = free.url + "/hf-inference"
        yield (
            Target("free", f"hf:{DEMO_MODEL}", RunConfig(api="hf", model=DEMO_MODEL, api_base=base), 0.0),
            Target("endpoint", endpoint.url + "/", RunConfig(api="hf", endpoint=endpoint.url + "/"),
                   DEMO_ENDPOINT_PRICE),
        )


# ---------------------------------------------------------------------------------------------------------------
# Command line.

_DEFAULTS = {  # flag: (real run, --demo)
    "concurrency": ((1, 2, 4, 8, 16, 32), (1, 2, 4, 8, 16)),
    "requests": (200, 80),
    "duration": (60.0, 4.0),
    "warmup": (5, 3),
    "images": (50, 40),
    "cold_start_timeout": (300.0, 20.0),
    "max_time": (900.0, 120.0),
}


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1,2,4,8 (got {text!r})") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 like 1,2,4,8 (got {text!r})")
    return tuple(values)


def _positive_floats(text: str) -> tuple[float, ...]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 5,10,20 (got {text!r})") from None
    if not values or values[0] <= 0 or not math.isfinite(values[-1]):
        raise argparse.ArgumentTypeError(f"expected numbers > 0 like 5,10,20 (got {text!r})")
    return tuple(values)


def _number(kind: Callable[[str], float], minimum: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < minimum or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value

    return parse


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"


def _dflt(name: str) -> str:
    real, demo = _DEFAULTS[name]
    return f"default: {_show(real)}; with --demo {_show(demo)}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every ``batchcap bench`` flag, on the parser cli.py gives us."""
    p.description = (
        "Compare captioning targets (the free serverless API, a paid Inference Endpoint, an OpenAI-compatible "
        "server) on the same images: throughput and latency per concurrency, errors by kind, cost per 1,000 "
        "images, the best concurrency within a latency SLO, and a verdict. Writes bench.json, bench.md and a plot."
    )
    p.epilog = (
        "examples:\n"
        "  batchcap bench --demo                      # offline: two local emulators, ~1 minute\n"
        f"  batchcap bench photos/ --target free=hf:{DEMO_MODEL} \\\n"
        "      --target endpoint=https://xyz.us-east-1.aws.endpoints.huggingface.cloud \\\n"
        "      --price-per-hour endpoint=0.60 --price-per-hour free=0 --slo 2\n"
        "  batchcap bench photos/ --target vlm=configs/openai-vlm.toml --arrival-rate 1,2,4\n"
        "tokens: each target uses --token-file NAME=PATH, else $HF_TOKEN / ~/.cache/huggingface/token;\n"
        "never on the command line, never written to bench.json.\n"
        "exit codes: 0 report written; 1 report written but no target returned a caption; 2 bad flags;\n"
        "  3 aborted (token refused, wrong URL/model, no readable images)"
    )
    p.add_argument("images_dir", metavar="IMAGES_DIR", type=Path, nargs="?",
                   help="folder of your images (the first --images are used, in scan order)")
    t = p.add_argument_group("targets")
    t.add_argument("--target", action="append", default=[], metavar="NAME=SPEC",
                   help="repeatable. SPEC: hf:MODEL_ID (serverless API), https://... (Inference Endpoint URL), "
                        "openai:MODEL@BASE_URL (chat server), or path/to/profile.toml (see configs/)")
    t.add_argument("--api-base", default=DEFAULT_API_BASE, metavar="URL", help="serverless API base for hf: targets (default: %(default)s)")
    t.add_argument("--token-file", action="append", default=[], metavar="NAME=PATH",
                   help="file holding the token for target NAME (PATH alone: every target)")
    t.add_argument("--price-per-hour", action="append", default=[], metavar="NAME=DOLLARS",
                   help="what target NAME costs per hour (0 = free): adds cost per 1,000 images and images per dollar")
    s = p.add_argument_group("sweep")
    s.add_argument("--concurrency", type=_positive_ints, metavar="LIST",
                   help=f"closed loop: requests in flight per step ({_dflt('concurrency')})")
    s.add_argument("--arrival-rate", type=_positive_floats, metavar="LIST",
                   help="open loop: Poisson arrivals per second per step, e.g. 5,10,20; latency counts from the "
                        "scheduled send time. Alone it replaces the closed loop; with --concurrency both run")
    s.add_argument("--requests", type=_number(int, 1), metavar="N", help=f"measured requests per step ({_dflt('requests')})")
    s.add_argument("--duration", type=_number(float, 0.1), metavar="SECONDS", help=f"seconds cap per step ({_dflt('duration')})")
    s.add_argument("--warmup", type=_number(int, 0), metavar="N",
                   help=f"requests per step sent first and reported apart ({_dflt('warmup')})")
    s.add_argument("--slo", type=_number(float, 0.001), default=2.0, metavar="SECONDS",
                   help="p95 latency target in seconds; the knee is the best step within it (default: %(default)s)")
    s.add_argument("--max-in-flight", type=_number(int, 1), default=256, metavar="N",
                   help="open loop: cap on requests in flight (default: %(default)s)")
    s.add_argument("--throttle-pause", type=_number(float, 0.0), default=1.0, metavar="SECONDS",
                   help="closed loop: seconds a worker rests after a 429 without Retry-After (default: %(default)s)")
    b = p.add_argument_group("bounds and output")
    b.add_argument("--images", type=_number(int, 1), metavar="N", help=f"distinct images to load and cycle through ({_dflt('images')})")
    b.add_argument("--images-dir", type=Path, dest="images_dir_opt", metavar="DIR",
                   help="same as IMAGES_DIR (with --demo: use these instead of generated samples)")
    b.add_argument("--max-image-mb", type=_number(float, 0.001), default=20.0, metavar="MB", help="skip larger files (default: %(default)s)")
    b.add_argument("--timeout", type=_number(float, 0.001), metavar="SECONDS", help="seconds per request (default: the target's, 60)")
    b.add_argument("--cold-start-timeout", type=_number(float, 0.0), metavar="SECONDS",
                   help=f"seconds to wait for a target's first caption ({_dflt('cold_start_timeout')})")
    b.add_argument("--max-time", type=_number(float, 1.0), metavar="SECONDS", help=f"seconds for the whole bench ({_dflt('max_time')})")
    b.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the open-loop arrival schedules (default: %(default)s)")
    b.add_argument("--out", type=Path, default=Path("bench-out"), metavar="DIR", help="folder for bench.json/.md/.png (default: %(default)s)")
    b.add_argument("--plot-format", choices=("png", "svg"), default="png", help="plot file type (default: %(default)s)")
    b.add_argument("--demo", action="store_true",
                   help="benchmark two local emulators: a rate-limited, cold-starting 'free' API and a fast $0.60/h "
                        "'endpoint' (no token, no network)")
    b.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="auto = uvloop where installed (default: auto)")


def _images_dir(ns: argparse.Namespace) -> Path | None:
    positional: Path | None = ns.images_dir
    option: Path | None = ns.images_dir_opt
    if positional is not None and option is not None and positional != option:
        raise UsageError(f"two image folders given ({positional} and --images-dir {option}); give one")
    return positional if positional is not None else option


def settings_from_args(ns: argparse.Namespace) -> BenchSettings:
    """Flags -> settings; raises UsageError for anything malformed. Targets are empty for --demo."""
    demo = bool(ns.demo)

    def pick(name: str) -> Any:
        value = getattr(ns, name, None)
        return value if value is not None else _DEFAULTS[name][1 if demo else 0]

    images_dir = _images_dir(ns)
    if demo:
        if ns.target:
            raise UsageError("--demo makes its own two targets; drop --target (or drop --demo)")
        targets: tuple[Target, ...] = ()
    else:
        if not ns.target:
            raise UsageError("name at least one --target (e.g. --target free=hf:MODEL_ID), or try --demo")
        targets = resolve_targets(ns.target, api_base=ns.api_base, token_files=ns.token_file, prices=ns.price_per_hour)
        if images_dir is None:
            raise UsageError("give the folder of images to benchmark with: batchcap bench IMAGES_DIR --target ...")
    concurrency = ns.concurrency
    rates = ns.arrival_rate or ()
    if concurrency is None:
        concurrency = () if rates else pick("concurrency")
    return BenchSettings(
        targets=targets,
        images_dir=Path(images_dir) if images_dir is not None else Path("."),
        images=pick("images"),
        concurrency=tuple(concurrency),
        arrival_rates=tuple(rates),
        requests=pick("requests"),
        duration=pick("duration"),
        warmup=pick("warmup"),
        slo=ns.slo,
        timeout=ns.timeout,
        cold_start_timeout=pick("cold_start_timeout"),
        max_time=pick("max_time"),
        max_in_flight=ns.max_in_flight,
        throttle_pause=ns.throttle_pause,
        max_image_mb=ns.max_image_mb,
        seed=ns.seed,
        demo=demo,
    )


async def _main(settings: BenchSettings, given_dir: Path | None, log: Callable[[str], None]) -> BenchResult:
    if not settings.demo:
        return await run_bench(settings, log=log)
    async with demo_targets() as targets:
        demo = replace(settings, targets=targets)
        none = {t.name: (None, "none (local emulator)") for t in targets}
        if given_dir is not None:
            return await run_bench(replace(demo, images_dir=given_dir), tokens=none, log=log)
        from .samples import generate

        with tempfile.TemporaryDirectory(prefix="batchcap-bench-") as tmp:
            await anyio.to_thread.run_sync(lambda: generate(Path(tmp), settings.images, seed=settings.seed))
            return await run_bench(replace(demo, images_dir=Path(tmp),
                                           extra={"images_note": f"{settings.images} generated sample images"}), tokens=none, log=log)


def run_from_args(ns: argparse.Namespace) -> int:
    """Run ``batchcap bench`` from parsed flags: 0 report written (1 if nothing succeeded), 2 bad flags, 3 aborted."""
    from .report import render_results, write_reports

    err = sys.stderr

    def log(line: str) -> None:
        print(line, file=err, flush=True)

    try:
        settings = settings_from_args(ns)
        given = _images_dir(ns)
    except UsageError as exc:
        print(f"batchcap bench: error: {exc}", file=err)
        return EXIT_USAGE
    try:
        from .cli import run_async

        result = run_async(lambda: _main(settings, given, log), ns.event_loop)
    except BenchAborted as exc:
        print(f"batchcap bench: aborted: {exc}", file=err)
        return EXIT_ABORTED
    except UsageError as exc:
        print(f"batchcap bench: error: {exc}", file=err)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"batchcap bench: aborted: {exc}", file=err)
        return EXIT_ABORTED
    paths = write_reports(result, ns.out, plot_format=ns.plot_format)
    print(render_results(result))
    log(f"batchcap bench: wrote {paths.json}, {paths.markdown}" + (f", {paths.plot}" if paths.plot else ""))
    if paths.plot_note:
        log(f"batchcap bench: {paths.plot_note}")
    if not any(r.stats.ok for t in result.targets for r in t.steps):
        log("batchcap bench: no target returned a caption; see the notes and error counts in bench.md")
        return EXIT_NOTHING
    return EXIT_OK
