"""One bench, measured: every target in turn, cold start first, then the closed- and open-loop sweeps.

Each target is driven with the project's own ``CaptionClient`` and protocol adapters on the same images (loaded
once, into memory), so the numbers are what ``batchcap run`` would get. Failed requests are data, summarized
per step; only the failures that would doom every request (a refused token, a wrong URL or model) stop the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from .benchspec import BenchSettings, Target
from .benchstats import (
    BenchResult,
    ColdStart,
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
from .config import Secret, find_token
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

__all__ = ["BenchAborted", "run_bench"]


class BenchAborted(BatchcapError):
    """A target refused the token or does not exist: every request would fail the same way."""


class _Interrupt:
    """Ctrl-C / SIGTERM during a bench: cancel the step under way, keep every finished step for the report."""

    __slots__ = ("_scopes", "_signals", "requested")

    def __init__(self) -> None:
        self.requested = False
        self._scopes: set[anyio.CancelScope] = set()
        self._signals: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._fire)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
                continue
            self._signals.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    def _fire(self) -> None:
        self.requested = True
        for scope in self._scopes:
            scope.cancel()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Run one measurement; an interrupt cancels it (its partial numbers are dropped, not half-reported)."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if self.requested:
                    scope.cancel()
                yield
            finally:
                self._scopes.discard(scope)


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
    interrupt: _Interrupt | None = None,
) -> TargetResult:
    interrupt = interrupt or _Interrupt()
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
        cold = None
        with interrupt.step():
            cold = await probe_until_ok(send, give_up_after=max(0.0, min(settings.cold_start_timeout, until - clock())))
        if cold is None:
            cold = ColdStart(False, None, 0, {}, None, "interrupted")
            notes.append("interrupted before the first caption")
        elif cold.ok:
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
            measured: tuple[StepRun, StepRun] | None = None
            with interrupt.step():
                if mode == "closed":
                    c = int(level)
                    warm = await closed_loop(send, concurrency=c, count=settings.warmup, **common)
                    measured = (warm, await closed_loop(send, concurrency=c, count=settings.requests, **common))
                else:  # every target gets the same arrival times for the same rate: a like-for-like comparison
                    seed = settings.seed * 1000 + 2 * settings.arrival_rates.index(level)
                    warm_at = poisson_schedule(level, count=settings.warmup, duration=settings.duration, seed=seed)
                    at = poisson_schedule(level, count=settings.requests, duration=settings.duration, seed=seed + 1)
                    warm = await open_loop(send, warm_at, max_in_flight=settings.max_in_flight, **common)
                    measured = (warm, await open_loop(send, at, max_in_flight=settings.max_in_flight, **common))
            if measured is None or interrupt.requested:
                what = f"concurrency {level:g}" if mode == "closed" else f"{level:g} arrivals/s"
                notes.append(f"interrupted (Ctrl-C) during {what}: that step and the later ones were not measured")
                log(f"  {target.name}: {notes[-1]}")
                break
            warm, run = measured
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
    handle_signals: bool = False,
) -> BenchResult:
    """Benchmark every target in turn; raise BenchAborted when one refuses the token or does not exist.

    With ``handle_signals``, Ctrl-C / SIGTERM stops the bench and returns what was measured so far
    (``stopped="interrupted"``), so the report is still written.

    ``tokens`` maps target names to ``(token, source description)``; by default each target's token is found
    as ``batchcap run`` finds it (``--token-file``, ``HF_TOKEN``, the huggingface_hub token file).
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = clock()
    deadline = t0 + settings.max_time
    tokens = dict(tokens) if tokens is not None else {t.name: find_token(t.token_file) for t in settings.targets}
    images, image_info = await _load_images(settings)
    interrupt = _Interrupt()
    if handle_signals:
        interrupt.install()
    log(f"batchcap bench: {len(images)} images ({image_info['bytes_total'] / 1e6:.1f} MB) from {settings.images_dir}")
    results: list[TargetResult] = []
    try:
        stopped = await _run_targets(settings, images, tokens, results, deadline, log, clock, interrupt)
    finally:
        interrupt.uninstall()
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


async def _run_targets(
    settings: BenchSettings, images: Sequence[LoadedImage], tokens: Mapping[str, tuple[Secret | None, str]],
    results: list[TargetResult], deadline: float, log: Callable[[str], None], clock: Callable[[], float],
    interrupt: _Interrupt,
) -> str | None:
    stopped: str | None = None
    for k, target in enumerate(settings.targets):
        if interrupt.requested:
            return "interrupted"
        remaining = deadline - clock()
        until = clock() + max(0.0, remaining) / (len(settings.targets) - k)  # a fair share of what is left
        token, source = tokens.get(target.name, (None, "none"))
        try:
            results.append(await _bench_target(target, images, settings, token, source, until=until, log=log,
                                               clock=clock, interrupt=interrupt))
        except BaseExceptionGroup as group:
            if (aborted := _leaf(group, BenchAborted)) is not None:
                raise aborted from None
            raise
        if any("time limit" in n for n in results[-1].notes) or clock() >= deadline:
            stopped = "max_time"
    return "interrupted" if interrupt.requested else stopped


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
