"""One bench, measured: every target in turn, cold start first, then the closed- and open-loop sweeps.

Each target is driven with the project's own client (``service.connect``) and protocol adapters on the same images (loaded
once, into memory), so the numbers are what ``batchcap run`` would get. Failed requests are data, summarized
per step; only the failures that would doom every request (a refused token, a wrong URL or model) stop the bench.

    run_bench -> for each target: TargetBench.cold_start() -> .sweep() (one .step() per level) -> .result()
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import anyio

from batchcap.aio import first_leaf, watch_signals
from batchcap.bench.environment import machine, versions
from batchcap.bench.interrupt import Interrupt
from batchcap.bench.loadgen import (
    Outcome,
    Send,
    StepRun,
    closed_loop,
    open_loop,
    poisson_schedule,
    probe_until_ok,
)
from batchcap.bench.send import QuotaWatch, make_sender
from batchcap.bench.spec import BenchSettings, Target
from batchcap.bench.stats import (
    BenchResult,
    ColdStart,
    Mode,
    StepRecord,
    TargetResult,
    knee,
    summarize_step,
    throttle_summary,
)
from batchcap.bench.verdict import describe_errors, verdict
from batchcap.config import RunConfig
from batchcap.errors import BenchAborted, ConfigError, InputError
from batchcap.models import LoadedImage
from batchcap.prepare import PreparePool
from batchcap.service.auth import Secret, find_token
from batchcap.service.client import CaptionClient
from batchcap.service.connect import make_client
from batchcap.service.pricing import PriceList, fetch_prices
from batchcap.service.protocols import make_adapter
from batchcap.service.settings import AfterRun
from batchcap.source.read import load_batch
from batchcap.source.scan import scan
from batchcap.types import Clock
from batchcap.words import plural

__all__ = ["run_bench"]

Log = Callable[[str], None]
Tokens = Mapping[str, tuple[Secret | None, str]]


async def run_bench(
    settings: BenchSettings,
    *,
    tokens: Tokens | None = None,
    log: Log = lambda line: None,
    clock: Clock = time.perf_counter,
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
    tokens = dict(tokens) if tokens is not None else {t.name: find_token(t.token_file) for t in settings.targets}
    images, image_info = await _load_images(settings)
    log(f"batchcap bench: {plural(len(images), 'image')} from {settings.images_dir}: "
        f"{image_info['bytes_total'] / 1e6:.1f} MB on disk, {image_info['bytes_sent_total'] / 1e6:.1f} MB as sent "
        f"({image_info['prepared']} prepared, {image_info['passed_as_is']} as they were)")
    interrupt = Interrupt()
    results: list[TargetResult] = []
    try:
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(watch_signals, interrupt.fire)
            stopped = await _run_targets(settings, images, tokens, results, t0 + settings.max_time, log, clock,
                                         interrupt)
            tg.cancel_scope.cancel()  # the signal watcher
    except BaseExceptionGroup as group:
        if (aborted := first_leaf(group, BenchAborted)) is not None:
            raise aborted from None
        raise
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return BenchResult(
        targets=tuple(results),
        slo_s=settings.slo,
        verdict=verdict(results, settings.slo),
        config=settings.public_dict(),
        versions=versions(loop),
        machine=machine(),
        images=image_info,
        started_at=started_at,
        elapsed_s=clock() - t0,
        stopped=stopped,
    )


async def _run_targets(
    settings: BenchSettings, images: Sequence[LoadedImage], tokens: Tokens, results: list[TargetResult],
    deadline: float, log: Log, clock: Clock, interrupt: Interrupt,
) -> str | None:
    """Each target in turn, each given a fair share of the time left; the bench's stop reason, if any."""
    stopped: str | None = None
    for k, target in enumerate(settings.targets):
        if interrupt.requested:
            return "interrupted"
        remaining = deadline - clock()
        until = clock() + max(0.0, remaining) / (len(settings.targets) - k)
        token, source = tokens.get(target.name, (None, "none"))
        bench = TargetBench(target, images, settings, token, source, until=until, log=log, clock=clock,
                            interrupt=interrupt)
        results.append(await bench.measure())
        if bench.out_of_time or clock() >= deadline:
            stopped = "max_time"
    return "interrupted" if interrupt.requested else stopped


#: How a bench leaves a named Endpoint it woke: as it found it (a running one is left running).
_PUT_BACK: dict[str, AfterRun] = {"paused": "pause", "scaledToZero": "scale-to-zero"}


class TargetBench:
    """The measurement of one target: its client, the notes it gathers, the steps it measured."""

    def __init__(
        self, target: Target, images: Sequence[LoadedImage], settings: BenchSettings, token: Secret | None,
        token_source: str, *, until: float, log: Log, clock: Clock, interrupt: Interrupt | None = None,
    ) -> None:
        self.target = target
        self.images = images
        self.settings = settings
        self.token = token
        self.token_source = token_source
        self.until = until
        self.log = log
        self.clock = clock
        self.interrupt = interrupt or Interrupt()
        self.timeout = settings.timeout or target.cfg.limits.timeout
        self.notes: list[str] = []
        self.steps: list[StepRecord] = []
        self.prices: PriceList | None = None  #: a token-billed target's, found before its first request
        self.out_of_time = False  #: the time share ran out before every step had run
        self.quota = QuotaWatch()  #: a Space's GPU quota, if it runs out during the bench

    async def measure(self) -> TargetResult:
        if self.target.cfg.target.endpoint_name:
            return await self.measure_named_endpoint()
        return await self.measure_at(self.target.cfg)

    async def measure_named_endpoint(self) -> TargetResult:
        """An Endpoint by name: resume it and time paused -> first caption; then leave it as it was found."""
        from batchcap.service.endpoints import EndpointLifecycle, EndpointName, EndpointsAPI

        cfg = self.target.cfg
        name = EndpointName.parse(cfg.target.endpoint_name or "")
        api = EndpointsAPI(cfg.target.endpoints_api, token=self.token)
        async with api:
            found = await api.get(name)
            after = _PUT_BACK.get(found.state)
            lifecycle = EndpointLifecycle(api, name, after=after,
                                          max_wait=self.settings.cold_start_timeout, poll=1.0,
                                          progress=lambda text: self.log(f"  {self.target.name}: {text}"))
            started = self.clock()
            try:
                info = await lifecycle.wake()
                woke = self.clock() - started
                at = replace(cfg, target=replace(cfg.target, endpoint=info.url, endpoint_name=None))
                result = await self.measure_at(at, woke_after=woke, found=found.state)
            except BaseException:
                await lifecycle.sleep(raise_errors=False)
                raise
            await lifecycle.sleep(raise_errors=False)
        return result

    async def measure_at(self, cfg: RunConfig, *, woke_after: float = 0.0, found: str | None = None) -> TargetResult:
        settings = self.settings
        adapter = make_adapter(cfg.target)
        sizes = [len(adapter.build(img).body) for img in self.images]
        connections = max(max(settings.concurrency, default=1), settings.max_in_flight if settings.arrival_rates else 1)
        self.log(f"batchcap bench: {self.target.name} -> {cfg.target.label} (token: {self.token_source})")
        async with make_client(cfg.target, token=self.token, timeout=self.timeout, connections=connections,
                               max_wait=self.settings.cold_start_timeout) as client:
            if isinstance(client, CaptionClient) and cfg.target.api == "openai" and self.target.price_per_hour is None:
                await self.find_prices(client, cfg)  # billed by the token, per provider
            send = make_sender(client, self.images, sizes, self.target, self.token_source, settings.throttle_pause,
                               self.quota, self.prices)
            cold = await self.cold_start(send)
            if woke_after and cold.seconds is not None:  # the true cold start: from the resume call on
                self.note(f"{found} -> running and healthy in {woke_after:.1f} s through the management API; "
                          f"first caption {woke_after + cold.seconds:.2f} s after the resume")
                cold = replace(cold, seconds=woke_after + cold.seconds)
            if cold.ok:
                await self.sweep(send)
        return self.result(cold)

    async def find_prices(self, client: CaptionClient, cfg: RunConfig) -> None:
        """``--token-price``, else the target's ``/v1/models`` (once); no price is said, not guessed."""
        if self.settings.token_price is not None:
            self.prices = PriceList(source="--token-price", fixed=self.settings.token_price)
            return
        self.prices, why = await fetch_prices(client, cfg.target.model or "")
        if self.prices is None or not self.prices.known:
            reason = why or (self.prices.describe() if self.prices is not None else "no prices listed")
            self.note(f"no price known ({reason}): its $ / 1k images is left out; pass --token-price IN,OUT or "
                      "--price-per-hour")
            self.prices = None

    async def cold_start(self, send: Send) -> ColdStart:
        """Time to the first caption, probing one request at a time."""
        name, settings = self.target.name, self.settings
        cold = None
        tries = 0

        async def until_quota(i: int) -> Outcome:  # a spent GPU quota will not come back while we probe
            nonlocal tries
            tries += 1
            outcome = await send(i)
            if self.quota.seen is not None:
                scope.cancel()
            return outcome

        with self.interrupt.step(), anyio.CancelScope() as scope:
            cold = await probe_until_ok(
                until_quota, give_up_after=max(0.0, min(settings.cold_start_timeout, self.until - self.clock()))
            )
        if cold is None and (spent := self.quota.seen) is not None:
            self.note(f"the Space's GPU quota is spent ({spent.message}); sweep skipped")
            return ColdStart(False, None, tries, {"429": tries}, None, spent.message)
        if cold is None:
            self.notes.append("interrupted before the first caption")
            return ColdStart(False, None, 0, {}, None, "interrupted")
        if cold.ok:
            self.log(f"  {name}: first caption after {cold.seconds:.2f} s "
                     f"({plural(cold.attempts, 'request')})")
        else:
            last = f"; last error: {cold.last_error}" if cold.last_error else ""
            self.note(f"no caption within {settings.cold_start_timeout:g} s of the first request "
                      f"({plural(cold.attempts, 'request')}: {describe_errors(cold.errors)}{last}); sweep skipped")
        return cold

    async def sweep(self, send: Send) -> None:
        """Every closed-loop level, then every open-loop rate, while time is left and nothing interrupts."""
        settings = self.settings
        loops: list[tuple[Mode, float]] = [("closed", c) for c in settings.concurrency]
        loops += [("open", r) for r in settings.arrival_rates]
        skip_closed = False
        for mode, level in loops:
            if mode == "closed" and skip_closed:
                continue
            if self.clock() >= self.until:
                self.out_of_time = True
                self.notes.append(f"time limit reached (--max-time): steps from {_what(mode, level)} on were not run")
                return
            measured = await self.step(send, mode, level)
            if measured is None or self.interrupt.requested:
                self.note(f"interrupted (Ctrl-C) during {_what(mode, level)}: that step and the later ones were "
                          "not measured")
                return
            warm, run = measured
            self.steps.append(_record(mode, level, run, warm, self.target.price_per_hour,
                                      token_billed=self.prices is not None))
            self.log(_step_line(self.target.name, self.steps[-1]))
            if (spent := self.quota.seen) is not None:
                self.note(f"the Space's GPU quota ran out after {plural(spent.captions_before, 'caption')} ({spent.message}); "
                          "later steps were not run: a spent quota only comes back with time")
                return
            if mode == "closed" and self.steps[-1].stats.ok == 0 and level != max(settings.concurrency):
                skip_closed = True
                self.note(f"nothing succeeded at concurrency {level:g}: higher concurrency was not tried")

    async def step(self, send: Send, mode: Mode, level: float) -> tuple[StepRun, StepRun] | None:
        """Warm-up then measurement at one level; None when an interrupt cut it."""
        s = self.settings
        common: dict[str, Any] = {"duration": s.duration, "grace": self.timeout, "deadline": self.until,
                                  "clock": self.clock}
        measured: tuple[StepRun, StepRun] | None = None
        with self.interrupt.step():
            if mode == "closed":
                c = int(level)
                warm = await closed_loop(send, concurrency=c, count=s.warmup, **common)
                measured = (warm, await closed_loop(send, concurrency=c, count=s.requests, **common))
            else:  # every target gets the same arrival times for the same rate: a like-for-like comparison
                seed = s.seed * 1000 + 2 * s.arrival_rates.index(level)
                warm_at = poisson_schedule(level, count=s.warmup, duration=s.duration, seed=seed)
                at = poisson_schedule(level, count=s.requests, duration=s.duration, seed=seed + 1)
                warm = await open_loop(send, warm_at, max_in_flight=s.max_in_flight, **common)
                measured = (warm, await open_loop(send, at, max_in_flight=s.max_in_flight, **common))
        return measured

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.log(f"  {self.target.name}: {text}")

    def result(self, cold: ColdStart) -> TargetResult:
        cfg = self.target.cfg
        main = [s.stats for s in self.steps if s.stats.mode == "closed"] or [s.stats for s in self.steps]
        return TargetResult(
            name=self.target.name,
            description=cfg.target.label,
            url=cfg.public_dict()["url"],
            api=cfg.target.api,
            price_per_hour=self.target.price_per_hour,
            token_source=self.token_source,
            cold_start=cold,
            steps=tuple(self.steps),
            knee=knee(main, self.settings.slo),
            throttle=throttle_summary(main),
            notes=tuple(self.notes),
            space_quota=self.quota.seen,
            pricing=None if self.prices is None else self.prices.describe(),
        )


def _what(mode: Mode, level: float) -> str:
    return f"concurrency {level:g}" if mode == "closed" else f"{level:g} arrivals/s"


def _record(mode: Mode, level: float, run: StepRun, warm: StepRun, price: float | None, *,
            token_billed: bool = False) -> StepRecord:
    stats = summarize_step(
        run.samples, mode=mode, level=level, price_per_hour=price, window_s=run.window_s, unsent=run.unsent,
        abandoned=run.abandoned, stopped_by=run.stopped_by, warmup_samples=warm.samples, token_billed=token_billed,
    )
    return StepRecord(stats, run.samples, warm.samples)


def _step_line(name: str, rec: StepRecord) -> str:
    s = rec.stats
    what = f"c={s.level:g}" if s.mode == "closed" else f"{s.level:g}/s"
    lat = f"p50 {s.latency.p50:.3f} s p95 {s.latency.p95:.3f} s" if s.latency else "no successes"
    err = f", {describe_errors(s.errors)}" if s.failed else ""
    return f"  {name} {what}: {s.ok}/{s.requests} ok, {s.images_per_s:.1f} img/s, {lat}{err} ({s.window_s:.1f} s)"


async def _load_images(settings: BenchSettings) -> tuple[list[LoadedImage], dict[str, Any]]:
    """The first ``settings.images`` files, read and prepared as ``run`` prepares them for these targets (the one
    path, ``PreparePool.for_adapters``): every target gets exactly these bytes, which are what a run would send."""
    max_bytes = int(settings.max_image_mb * 1024 * 1024)

    def load() -> list[Any]:
        jobs = list(islice(scan(settings.images_dir), settings.images))
        return load_batch(jobs, max_bytes=max_bytes)

    loaded = await anyio.to_thread.run_sync(load)
    files = [x for x in loaded if isinstance(x, LoadedImage)]
    skipped = [f"{job.path}: {err}" for job, err in (x for x in loaded if not isinstance(x, LoadedImage))]
    pool = PreparePool.for_adapters(settings.prepare, [make_adapter(t.cfg.target) for t in settings.targets])
    images: list[LoadedImage] = []
    for file, got in zip(files, await pool.ready(files), strict=True):
        if isinstance(got, InputError):
            skipped.append(f"{file.job.path}: {got}")
        else:
            images.append(got)
    if not images:
        raise ConfigError(f"no readable images in {settings.images_dir}" + (f" ({skipped[0]})" if skipped else ""))
    return images, _image_info(settings, images, skipped)


def _image_info(settings: BenchSettings, images: Sequence[LoadedImage], skipped: list[str]) -> dict[str, Any]:
    """What the report says of the images: on disk, and as sent (``bytes_sent_total``: the image bytes, before
    the protocol's envelope)."""
    on_disk = sorted(i.prep.original_bytes if i.prep is not None else len(i.data) for i in images)
    sent = sorted(len(i.data) for i in images)
    prepared = sum(1 for i in images if i.prep is not None and i.prep.prepared)
    return {
        "dir": str(settings.images_dir),
        "count": len(images),
        "bytes_total": sum(on_disk),
        "bytes_median": on_disk[len(on_disk) // 2],
        "bytes_sent_total": sum(sent),
        "bytes_sent_median": sent[len(sent) // 2],
        "prepared": prepared,
        "passed_as_is": len(images) - prepared,
        "max_long_side_sent": max((max(i.prep.width, i.prep.height) for i in images if i.prep is not None),
                                  default=None),
        "types": dict(Counter(i.mime for i in images)),
        "skipped": skipped,
    }
