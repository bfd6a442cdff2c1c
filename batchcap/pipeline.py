"""The run: scan + read (threads) -> senders -> one journal writer, joined by bounded queues.

    readers x R (one thread hop per batch: the scan's next batch, then its files read)  --image batches-->
    senders x concurrency (one RateLimiter, one ClientSession)  --records-->  writer (journal, progress)

Every queue is bounded, so memory is flat whatever the folder size; the writer is the only owner of the
journal, and it drains whatever the senders produced even when the run is interrupted or aborted, so a
result that exists is a result that is written.

The per-image path does no task switch of its own: readers hand over whole batches, the senders take images
from the current batch (``_Feed``) and drop finished records into a list (``_Sink``) that the writer takes in
batches; only the HTTP request itself awaits. A task switch costs about as much as the rest of batchcap's work
per image, and the bare-aiohttp anchor in ``benchmarks/`` pays none (see benchmarks/README.md).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from . import __version__
from .client import CaptionClient
from .config import RunConfig, Secret
from .errors import (
    APIError,
    AuthError,
    BatchcapError,
    InputError,
    JournalError,
    ModelLoading,
    RateLimited,
    RejectedImage,
    TransientError,
    WrongTarget,
)
from .images import load_batch
from .journal import JournalIndex, JournalWriter, load_index, write_json_atomic
from .models import ErrorInfo, ImageJob, LoadedImage, Record
from .progress import NullProgress, Progress
from .protocols import make_adapter
from .ratelimit import RateLimiter
from .retry import RetryPolicy
from .sources import scan_batches

_Loaded = LoadedImage | tuple[ImageJob, InputError]

__all__ = ["REFUSAL_LIMIT", "RunAborted", "RunStats", "manifest_path", "run", "tune_malloc"]

#: Identical refusals (same HTTP 4xx message) before any success that stop the run: a wrong model or
#: unsupported task fails every image alike, and 100k such requests help nobody.
REFUSAL_LIMIT = 25


class RunAborted(BatchcapError):
    """The run stopped on purpose (bad token, wrong URL, journal or disk fault, service never ready)."""


@dataclass(slots=True)
class RunStats:
    """What a run did; ``repr`` is the one-line summary."""

    found: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    elapsed: float = 0.0
    earlier_errors: int = 0
    interrupted: bool = False
    aborted: str | None = None
    scan_problems: int = 0
    sidecar_errors: int = 0
    errors_by_type: Counter[str] = field(default_factory=Counter)
    latencies_sum: float = 0.0

    def __repr__(self) -> str:
        return (
            f"RunStats(ok={self.ok}, failed={self.failed}, skipped={self.skipped}, retried={self.retries}, "
            f"elapsed={self.elapsed:.1f})"
        )

    @property
    def rate(self) -> float:
        return (self.ok + self.failed) / self.elapsed if self.elapsed > 0 else 0.0


def manifest_path(out: Path) -> Path:
    """The run manifest sits beside the journal: ``results.jsonl`` -> ``results.manifest.json``."""
    return out.with_name(out.stem + ".manifest.json")


def _error_info(exc: BatchcapError, *, retryable: bool) -> ErrorInfo:
    status = exc.status if isinstance(exc, APIError) else None
    message = exc.message if isinstance(exc, APIError) else str(exc)
    return ErrorInfo(type(exc).__name__, message, status, retryable)


async def run(
    cfg: RunConfig,
    *,
    token: Secret | None = None,
    progress: Progress | None = None,
    policy: RetryPolicy | None = None,
    handle_signals: bool = False,
    on_scan_done: Callable[[], None] | None = None,
    seed: int | None = None,
) -> RunStats:
    """Caption every image of ``cfg.input_dir`` not yet done in ``cfg.out``. Raises RunAborted on a run-level fault."""
    progress = progress or NullProgress()
    policy = policy or RetryPolicy(retries=cfg.retries, wait_budget=cfg.max_wait)
    stats = RunStats()
    started_wall = time.time()
    started = time.monotonic()
    index: JournalIndex = await anyio.to_thread.run_sync(
        lambda: load_index(cfg.out, retry_failed=cfg.retry_failed)
    )
    stats.earlier_errors = index.error_final if not cfg.retry_failed else 0
    writer = JournalWriter(cfg.out)
    writer.open()
    manifest: dict[str, Any] = {
        "tool": "batchcap",
        "version": __version__,
        "started_at": started_wall,
        "finished_at": None,
        "state": "running",
        "config": cfg.public_dict(),
        "journal_before": {"ok": index.ok, "error_final": index.error_final,
                           "error_retryable": index.error_retryable, "repaired_bytes": index.repaired_bytes},
    }
    try:
        write_json_atomic(manifest_path(cfg.out), manifest)
    except OSError as exc:
        writer.close()
        raise JournalError(f"cannot write the run manifest beside {cfg.out}: {exc.strerror or exc}") from None

    limiter = RateLimiter(cfg.rate, cfg.burst)
    try_acquire = limiter.try_acquire  # unlimited and unpaused: a token without a coroutine
    target = cfg.target  # a property that formats the URL: once per run, not per record
    rng = random.Random(seed)
    max_bytes = int(cfg.max_image_mb * 1024 * 1024)
    last_progress = [time.monotonic()]
    ok_seen = [False]
    refusals: Counter[str] = Counter()  # identical server refusals seen before any success
    abort: list[BaseException] = []

    feed = _Feed(capacity=max(2 * cfg.concurrency, cfg.read_batch))
    sink = _Sink(flush_at=max(64, 4 * cfg.concurrency), high_water=max(4096, 64 * cfg.concurrency))

    def scan_error(path: str, exc: OSError) -> None:
        stats.scan_problems += 1

    scan_lock = threading.Lock()

    def next_batch(batches: Iterator[list[ImageJob]]) -> tuple[list[ImageJob], list[_Loaded]] | None:
        """In a worker thread: the scan's next batch, read. One hop per batch does both."""
        with scan_lock:  # the scan is one generator; the reads run in parallel
            jobs = next(batches, None)
        return None if jobs is None else (jobs, load_batch(jobs, max_bytes=max_bytes))

    async def reader(batches: Iterator[list[ImageJob]], scan_done: anyio.Event) -> None:
        while (got := await anyio.to_thread.run_sync(next_batch, batches)) is not None:
            jobs, loaded = got
            stats.found += len(jobs)
            progress.found(len(jobs))
            good: list[LoadedImage] = []
            for item in loaded:
                if isinstance(item, LoadedImage):
                    good.append(item)
                else:
                    job, err = item
                    sink.put(Record(job.path, "error", error=_error_info(err, retryable=False),
                                    target=target, ts=time.time()))
            if good:
                await feed.put(good)
        if not scan_done.is_set():
            scan_done.set()
            stats.skipped = index.ok + index.error_final if not cfg.retry_failed else index.ok
            if on_scan_done:
                on_scan_done()

    async def readers() -> None:
        try:
            batches = scan_batches(
                cfg.input_dir,
                batch_size=cfg.read_batch,
                skip=index.__contains__ if len(index) else None,  # a fresh run: no per-file lookup
                follow_symlinks=cfg.follow_symlinks,
                on_error=scan_error,
            )
            scan_done = anyio.Event()
            async with anyio.create_task_group() as tg:
                for _ in range(cfg.readers):
                    tg.start_soon(reader, batches, scan_done)
        finally:
            feed.close()

    async def sender(client: CaptionClient) -> None:
        pop, next_image, put, room = feed.pop, feed.next, sink.put, sink.wait_room
        while (image := pop()) is not None or (image := await next_image()) is not None:
            put(await caption_one(client, image))
            if sink.full:  # the journal is behind (a slow disk): wait rather than pile records up
                await room()

    async def caption_one(client: CaptionClient, image: LoadedImage) -> Record:
        attempts = retries_used = 0
        waited = 0.0
        while True:
            attempts += 1
            if not try_acquire():
                await limiter.acquire()
            stats.attempts += 1
            try:
                reply = await client.caption(image)
            except APIError as exc:
                if isinstance(exc, RateLimited):
                    stats.throttled += 1
                    hint = exc.retry_after
                    limiter.throttled(None if hint is None else min(hint, policy.wait_cap))
                    rate = limiter.bucket.rate
                    progress.note(f"rate-limited: now {rate:.2g} req/s" if rate else "rate-limited")
                if isinstance(exc, AuthError | WrongTarget):
                    raise RunAborted(_abort_message(exc, cfg, token)) from None
                decision = policy.decide(exc, retries_used=retries_used, waited=waited, rand=rng.random)
                if isinstance(exc, ModelLoading) and time.monotonic() - last_progress[0] > cfg.max_wait:
                    raise RunAborted(
                        f"{client.host} has not served a caption for {cfg.max_wait:g} s (still loading or waking "
                        f"up: {exc.message}); run the same command later to resume"
                    ) from None
                if decision.action != "retry":
                    if isinstance(exc, RejectedImage) and stats.ok == 0 and not ok_seen[0]:
                        refusals[exc.message] += 1
                        if refusals[exc.message] >= REFUSAL_LIMIT:
                            raise RunAborted(
                                f"the first {REFUSAL_LIMIT} images were all refused with the same answer "
                                f"({exc.message}); check --model / --api and the service, then run again"
                            ) from None
                    return Record(
                        image.job.path, "error",
                        error=_error_info(exc, retryable=isinstance(exc, TransientError)),
                        attempts=attempts, bytes_sent=len(image.data), target=target,
                        request_id=exc.request_id, ts=time.time(),
                    )
                stats.retries += 1
                if decision.spends_retry:
                    retries_used += 1
                else:
                    waited += decision.delay
                if decision.delay > 0:
                    await anyio.sleep(decision.delay)
                continue
            limiter.succeeded()
            ok_seen[0] = True
            last_progress[0] = time.monotonic()
            stats.bytes_sent += reply.bytes_sent
            stats.latencies_sum += reply.latency_s
            return Record(
                image.job.path, "ok", caption=reply.caption, attempts=attempts,
                latency_s=round(reply.latency_s, 4), bytes_sent=reply.bytes_sent, target=target,
                request_id=reply.request_id, ts=time.time(),
            )

    def write_batch(batch: list[Record]) -> int:
        """In a worker thread: append to the journal (and its periodic fdatasync), write sidecars.

        Returns how many sidecars failed. Only the writer task calls this, one call at a time.
        """
        writer.write(batch)
        failed = 0
        if cfg.sidecar:
            for rec in batch:
                if rec.status == "ok" and rec.caption is not None and not _write_sidecar(cfg, rec):
                    failed += 1
        return failed

    async def write_loop() -> None:
        while (batch := await sink.take()) is not None:
            stats.sidecar_errors += await anyio.to_thread.run_sync(write_batch, batch)
            ok = 0
            for rec in batch:
                if rec.status == "ok":
                    ok += 1
                else:
                    stats.errors_by_type[rec.error.type if rec.error else "?"] += 1
            stats.ok += ok
            stats.failed += len(batch) - ok
            progress.done(ok, len(batch) - ok)

    async def work(client: CaptionClient) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(readers)
            for _ in range(cfg.concurrency):
                tg.start_soon(sender, client)

    async def watch_signals(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stats.interrupted = True
                scope.cancel()
                return

    adapter = make_adapter(cfg)
    client = CaptionClient(cfg.url, adapter, token=token, timeout=cfg.timeout, connections=cfg.concurrency)
    writer_failed: list[BaseException] = []
    try:
        async with client, anyio.create_task_group() as outer:

            async def guarded_writer() -> None:
                try:
                    await write_loop()
                except BaseException as exc:  # the journal failed: stop producing, then report
                    writer_failed.append(exc)
                    work_scope.cancel()
                    raise

            outer.start_soon(guarded_writer)
            with anyio.CancelScope() as work_scope:
                try:
                    async with anyio.create_task_group() as tg:
                        if handle_signals:
                            tg.start_soon(watch_signals, work_scope)
                        await work(client)
                        tg.cancel_scope.cancel()  # stop the signal watcher
                except BaseException as exc:  # sorted out below, after the writer drained
                    if isinstance(exc, anyio.get_cancelled_exc_class()):
                        raise
                    abort.append(exc)
            sink.close()
    except JournalError as exc:
        raise RunAborted(str(exc)) from None
    except BaseExceptionGroup as group:
        journal = group.subgroup(JournalError)
        if journal is not None:
            raise RunAborted(str(journal.exceptions[0])) from None
        raise
    finally:
        stats.elapsed = time.monotonic() - started
        writer.close()
        reason = None if writer_failed else _first_abort(abort)
        stats.aborted = reason
        manifest.update(
            finished_at=time.time(),
            state="aborted" if reason else "interrupted" if stats.interrupted else "finished",
            abort_reason=reason,
            counts={"found": stats.found, "ok": stats.ok, "failed": stats.failed, "skipped": stats.skipped,
                    "attempts": stats.attempts, "retries": stats.retries, "throttled": stats.throttled},
            errors_by_type=dict(stats.errors_by_type),
            elapsed_s=round(stats.elapsed, 3),
        )
        try:
            write_json_atomic(manifest_path(cfg.out), manifest)
        except OSError:
            pass
        progress.close()
    if stats.aborted:
        raise RunAborted(stats.aborted)
    return stats


_malloc_tuned = False


def tune_malloc() -> None:
    """glibc only: keep up to 16 MB of freed heap per arena instead of handing it back to the OS at once.

    Image bytes are allocated in the reader threads (their own malloc arenas) and freed on the event loop once
    sent. With glibc's default 128 KB trim threshold every batch returns its pages and the next one faults them
    in again: ~6 page faults and ~8 us of CPU per 50 KB image, 5-7% of the whole run (benchmarks/README.md).
    Files over 1 MB still come from mmap and go straight back, so RSS stays bounded. Done once per process,
    by the process owner (the CLI), not by ``run()``: a library must not retune its host's allocator.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 16 * 1024 * 1024)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD (setting one turns off glibc's sliding thresholds)
    except (OSError, AttributeError):
        pass


def _write_sidecar(cfg: RunConfig, rec: Record) -> bool:
    target = (cfg.input_dir / rec.path).with_suffix(cfg.sidecar_ext)
    try:
        target.write_text((rec.caption or "") + "\n", encoding="utf-8")
    except OSError:
        return False
    return True


class _Feed:
    """Images for the sender pool: readers ``put`` whole batches, senders take them one at a time.

    ``pop()`` (or ``next()``) returns at once while images wait (no checkpoint, no task switch, no lock, and
    ``pop`` no coroutine); only a sender that finds the queue empty sleeps until the next batch. Readers wait
    while ``capacity`` images are queued. None once ``close``d and empty.
    """

    __slots__ = ("_closed", "_items", "_ready", "_space", "capacity")

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[LoadedImage] = deque()
        self._ready = anyio.Event()  # set when images were added (or on close) since the queue ran dry
        self._space: anyio.Event | None = None  # a reader waits on it while the queue is full
        self._closed = False

    async def put(self, batch: list[LoadedImage]) -> None:
        while len(self._items) >= self.capacity:
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()
        self._items.extend(batch)
        self._ready.set()

    def close(self) -> None:
        """No more batches: senders drain the queue, then ``next`` returns None."""
        self._closed = True
        self._ready.set()

    def pop(self) -> LoadedImage | None:
        """The next image if one is queued now, else None (then ``await next()``): no coroutine at all."""
        items = self._items
        if not items:
            return None
        image = items.popleft()
        if self._space is not None and len(items) < self.capacity:
            self._space.set()
            self._space = None
        return image

    async def next(self) -> LoadedImage | None:
        items = self._items
        while not items:
            if self._closed:
                return None
            if self._ready.is_set():
                self._ready = anyio.Event()
            await self._ready.wait()
        return self.pop()


class _Sink:
    """Finished records on their way to the journal: ``put`` without a task switch, ``take`` in batches.

    The writer wakes when ``flush_at`` records wait, or every ``interval`` seconds while fewer do, or on
    ``close``. Past ``high_water`` waiting records ``full`` turns true and senders ``wait_room``: the bound
    that replaces a bounded stream's.
    """

    __slots__ = ("_closed", "_items", "_room", "_wake", "flush_at", "high_water", "interval")

    def __init__(self, *, flush_at: int, high_water: int, interval: float = 0.05) -> None:
        self.flush_at = flush_at
        self.high_water = high_water
        self.interval = interval
        self._items: list[Record] = []
        self._wake = anyio.Event()
        self._room: anyio.Event | None = None
        self._closed = False

    def put(self, record: Record) -> None:
        items = self._items
        items.append(record)
        if len(items) >= self.flush_at:
            self._wake.set()

    @property
    def full(self) -> bool:
        return len(self._items) >= self.high_water

    async def wait_room(self) -> None:
        while self.full and not self._closed:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    def close(self) -> None:
        """No more records: the writer takes what is left, then ``take`` returns None."""
        self._closed = True
        self._wake.set()

    async def take(self) -> list[Record] | None:
        """The next batch (never empty), or None once closed and drained."""
        while True:
            if len(self._items) < self.flush_at and not self._closed:
                with anyio.move_on_after(self.interval):
                    await self._wake.wait()
            if self._wake.is_set() and not self._closed:
                self._wake = anyio.Event()
            if self._items or self._closed:
                break
        batch, self._items = self._items, []
        if self._room is not None:
            self._room.set()
            self._room = None
        if not batch and self._closed:
            return None
        return batch


def _first_abort(errors: list[BaseException]) -> str | None:
    """The message of the first run-level fault; anything unexpected is re-raised (a bug, not a user error)."""
    for exc in errors:
        leaves = list(_leaves(exc))
        for leaf in leaves:
            if isinstance(leaf, RunAborted | JournalError | InputError):
                return str(leaf)
        for leaf in leaves:
            if not isinstance(leaf, anyio.get_cancelled_exc_class() | anyio.BrokenResourceError):
                raise leaf
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_leaves(sub))
        return out
    return [exc]


def _abort_message(exc: APIError, cfg: RunConfig, token: Secret | None) -> str:
    host = urlsplit(cfg.url).netloc
    if isinstance(exc, AuthError):
        if token is None:
            return (
                f"{host} requires a token (HTTP {exc.status}) and none was found: "
                "set HF_TOKEN or pass --token-file"
            )
        return f"the token was refused by {host} (HTTP {exc.status}): check HF_TOKEN or --token-file"
    return f"{exc.message}: check --model / --endpoint / --base-url ({cfg.url})"

