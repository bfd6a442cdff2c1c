"""The stages of a run, as methods of one object that holds what they share.

    readers x R (one thread hop per chunk: the scan's next batch, its files read, hashed, judged against the
                 journal per task (Planner: the asks left, answers copied from earlier runs), each header triaged)
        --Deduper: copies wait for their original-->
        -> files that need pixel work: PreparePool (threads, one per core)  --Feed-->
    senders x concurrency (Captioner: an image's tasks back to back; one limiter, one client)
        --Sink-->  writer (journal, sidecars, progress)

Every queue is bounded, so memory is flat whatever the folder size; the writer is the only owner of the
journal, and it drains whatever the senders produced even when the run is interrupted or aborted.

Stopping drains: the first Ctrl-C / SIGTERM (or a caller's ``stop``) ends the reading, and no request starts
after it; the requests in flight finish (each bounded by ``--timeout``) and their answers are written. A second
signal cancels at once. A watchdog beats every second beside the senders: it notices a sleep of the machine
(``flow.suspend``), asks the captioner for stops that come with time (``--max-wait``), and keeps the progress
line going while nothing else moves (an outage).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TypeAlias

import anyio

from batchcap.aio import watch_signals
from batchcap.config import RunConfig
from batchcap.errors import InputError, RunAborted, as_value
from batchcap.flow.suspend import SuspendDetector
from batchcap.journal import JournalIndex, JournalWriter
from batchcap.models import ErrorInfo, ImageJob, LoadedImage, Record
from batchcap.prepare import PreparePool, below_useful_size
from batchcap.progress import Progress
from batchcap.run.attempt import Captions, error_info
from batchcap.run.dedupe import Deduper
from batchcap.run.guard import drains_first
from batchcap.run.plan import Planner
from batchcap.run.queues import Feed, Sink
from batchcap.run.sidecar import SidecarWriter
from batchcap.run.stats import RunStats
from batchcap.source.datasets import Source
from batchcap.source.digest import content_digest
from batchcap.source.read import load_batch
from batchcap.source.scan import problem_reason

__all__ = ["LOAD_CHUNK_BYTES", "Stages"]

Loaded: TypeAlias = LoadedImage | tuple[ImageJob, InputError]
#: What a reader hands over: an image to send, a file that cannot be, or a copy's record (captioned already).
Handed: TypeAlias = LoadedImage | tuple[ImageJob, InputError] | Record

#: Raw file bytes one reader hop reads at most (by the scan's sizes; always at least one file).
LOAD_CHUNK_BYTES = 32 * 1024 * 1024
#: Seconds between two beats of the watchdog.
HEARTBEAT = 1.0
#: Error records the summary names (the rest are in the journal).
FAILED_EXAMPLES = 5


def _chunks(jobs: list[ImageJob], limit: int) -> list[list[ImageJob]]:
    """``jobs`` in order, cut where the next file would take a chunk past ``limit`` bytes (small files: one chunk)."""
    if sum(job.size for job in jobs) <= limit:
        return [jobs]
    chunks: list[list[ImageJob]] = [[]]
    total = 0
    for job in jobs:
        if chunks[-1] and total + job.size > limit:
            chunks.append([])
            total = 0
        chunks[-1].append(job)
        total += job.size
    return chunks


class Stages:
    """Readers, senders and the writer of one run, and the state they share."""

    def __init__(
        self, cfg: RunConfig, *, index: JournalIndex, writer: JournalWriter, captioner: Captions, stats: RunStats,
        progress: Progress, source: Source, planner: Planner, preparer: PreparePool,
        on_scan_done: Callable[[], None] | None = None, suspend: SuspendDetector | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source  #: where the images come from (``batchcap.source.datasets.open_source``)
        self.index = index
        self.planner = planner
        self.primary = planner.plan.primary  #: the task ``--sidecar`` writes and the boilerplate counter reads
        self.text_tasks = frozenset(t.name for t in planner.plan.tasks if t.schema is None)
        self.writer = writer
        self.captioner = captioner
        self.stats = stats
        self.progress = progress
        self.on_scan_done = on_scan_done
        self.preparer = preparer  #: what is sent of each file (the one path run, bench and check share)
        self.max_bytes = cfg.source.max_bytes
        senders = captioner.senders
        self.feed = Feed(capacity=max(2 * senders, cfg.source.read_batch))
        self.sink = Sink(flush_at=max(64, 4 * senders), high_water=max(4096, 64 * senders))
        self.count_targets = len(cfg.routing.targets) > 1  # per-target counts, only where there are several
        self.scan_lock = threading.Lock()  # the scan is one generator; the reads run in parallel
        self.scan_done = anyio.Event()
        self.work_scope = anyio.CancelScope()  # readers and senders; cancelled by a second signal or the writer
        self.read_scope = anyio.CancelScope()  # the readers alone; cancelled by the first signal (a drain)
        self.draining = False
        self.suspend = suspend or SuspendDetector(now=time.monotonic(), wall=time.time())
        self._note: str | None = None  # the watchdog's last status line (an outage), to clear it once over
        self.failures: list[BaseException] = []  # what stopped the producers, sorted out after the drain
        self.writer_failed = False
        self.deduper = Deduper(cfg.source.dedupe, root=source.root) if cfg.source.dedupe != "off" else None
        self.scan_records: list[Record] = []  # what the scan skipped, appended from the reader threads
        root = source.root  # --sidecar needs a local folder of images (checked by ``assemble.open_input``)
        self.sidecars = SidecarWriter(root, ext=cfg.sidecar_ext, mode=cfg.sidecar_mode,
                                      follow_symlinks=cfg.source.follow_symlinks) if cfg.sidecar and root else None
        if self.sidecars is not None:
            stats.sidecars = self.sidecars.report

    # -- the run as a whole ----------------------------------------------------------------------------------

    async def produce_until_stopped(self, *, handle_signals: bool, stop: anyio.Event | None = None,
                                    stop_now: anyio.Event | None = None) -> None:
        """Produce until done, interrupted or stopped; then close the sink so the writer drains and ends."""
        with self.work_scope:
            try:
                async with anyio.create_task_group() as tg:
                    if handle_signals:
                        tg.start_soon(watch_signals, self.interrupt, self.interrupt)
                    if stop is not None:
                        tg.start_soon(self.interrupt_when, stop, stop_now)
                    tg.start_soon(self.watchdog)
                    await self.produce()
                    tg.cancel_scope.cancel()  # the signal watcher and the watchdog
                if not self.failures:  # no stop: what the guard held back is written (or shows a fault)
                    self.finish()
            except BaseException as exc:
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    raise
                self.failures.append(exc)
        self.sink.close()

    def finish(self) -> None:
        """No run-level stop: the final records the guard held back are written (unless they show that every
        image was refused alike: then ``RunAborted``)."""
        for record in self.captioner.finish():
            self.sink.put(record)

    def interrupt(self) -> None:
        """The first Ctrl-C / SIGTERM drains (see the module docstring); the second stops at once."""
        if self.stats.interrupted:
            self.work_scope.cancel()
            return
        self.stats.interrupted = True
        self.drain()

    def drain(self) -> None:
        """No request starts from now on (reading stops, queued images are dropped); those in flight finish."""
        if self.draining:
            return
        self.draining = True
        self.read_scope.cancel()
        self.feed.drain()
        self.captioner.drain()

    async def interrupt_when(self, stop: anyio.Event, stop_now: anyio.Event | None = None) -> None:
        """A caller's stop (its own signal watcher, a Ray cancel): the same as Ctrl-C; ``stop_now`` as the
        second."""
        await stop.wait()
        self.interrupt()
        if stop_now is not None:
            await stop_now.wait()
            self.interrupt()

    async def watchdog(self) -> None:
        """Every second: the machine's sleeps, the stops that come with time, the progress line."""
        captioner, progress, suspend = self.captioner, self.progress, self.suspend
        while True:
            await anyio.sleep(HEARTBEAT)
            suspend.tick(time.monotonic(), time.time())
            if slept := suspend.take():
                self.stats.slept += slept
                captioner.slept(slept)
            if not self.draining:
                captioner.check()  # raises RunAborted: nothing but failures for --max-wait
            note = captioner.status_note()
            if note is not None or self._note is not None:  # kept fresh while it lasts, cleared once over
                progress.note(note or "")
                self._note = note
            progress.tick()

    async def write_until_drained(self) -> None:
        """The writer task; if the journal fails, producing stops too (nothing more could be recorded)."""
        try:
            await self.write_loop()
        except BaseException:
            self.writer_failed = True
            self.work_scope.cancel()
            raise

    # -- producing -------------------------------------------------------------------------------------------

    async def produce(self) -> None:
        """Readers and senders until the scan is exhausted and every image has a record (or a stop).

        The senders may also end first, on a draining stop (the budget): then the readers are stopped too.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.readers)
            async with anyio.create_task_group() as senders:
                for _ in range(self.captioner.senders):
                    senders.start_soon(self.sender)
            tg.cancel_scope.cancel()  # the readers: done already, or feeding senders that have stopped

    async def readers(self) -> None:
        source = self.cfg.source
        try:
            batches = self.source.batches(
                batch_size=source.read_batch,
                skip=self.skip(),
                shard=source.shard,
                on_error=self.scan_error,
                max_bytes=self.max_bytes,
            )
            with self.read_scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(source.readers):
                        tg.start_soon(self.reader, batches)
        finally:
            self.feed.close()

    def skip(self) -> Callable[[str], bool] | None:
        """What the journal holds as this run would ask it, every task (the planner; the source also leaves out,
        with ``--shard``, other shards' images)."""
        return self.planner.skip if self.index.lines else None  # a fresh run: no per-image lookup

    def scan_error(self, path: str, exc: OSError) -> None:
        """In a reader thread: what the source could not read gets an error record per task (never silent). The
        source reports only this shard's problems."""
        info = ErrorInfo("InputError", problem_reason(path, exc), None, False)
        for task in self.planner.open_tasks(path):  # those an earlier run recorded are skipped like any done image
            self.scan_records.append(Record(path, "error", error=info, target=self.captioner.target, ts=time.time(),
                                            task=task))

    def flush_scan_records(self) -> None:
        """On the event loop: hand the scan's error records to the writer, and count them (once per path)."""
        records, self.scan_records = self.scan_records, []
        for record in records:
            if record.task == self.primary or len(self.planner.plan.tasks) == 1:
                if record.path.endswith("/"):
                    self.stats.scan_problem_folders += 1
                else:
                    self.stats.scan_problem_files += 1
            self.progress.found(1)
            self.sink.put(record)

    def next_batch(
        self, batches: Iterator[list[ImageJob]]
    ) -> tuple[list[ImageJob], list[Handed], list[list[ImageJob]]] | None:
        """In a worker thread: the scan's next batch, and its first ``LOAD_CHUNK_BYTES`` read. One hop does both.

        The rest of a batch of big files (64 phone photos are 450 MB) comes back unread, for ``load_chunk``: the
        first images reach preparation sooner, and a reader never holds more than a chunk of raw bytes.
        """
        with self.scan_lock:
            jobs = next(batches, None)
        if jobs is None:
            return None
        chunks = _chunks(jobs, LOAD_CHUNK_BYTES)
        return jobs, self.load_chunk(chunks[0]), chunks[1:]

    def load_chunk(self, jobs: list[ImageJob]) -> list[Handed]:
        """In a worker thread: read ``jobs``, hash each file, let the planner judge each task against the journal
        (answers kept, copied from an earlier run, or asked), dedupe what is left within the run, and with
        preparation on let each header decide at once (2-20 us): sent as it is, refused, or (``prep`` None) for
        the pool.

        Returns images to send (with their asks), ``(job, error)`` for files that cannot be read, and records made
        without a request (copies, prompt errors).
        """
        loaded = load_batch(jobs, max_bytes=self.max_bytes)
        out: list[Handed] = []
        asked: list[LoadedImage] = []
        kept: list[Loaded] = []
        plan_image = self.planner.plan_image
        for item in loaded:
            if isinstance(item, LoadedImage):
                image = item.with_digest(content_digest(item.data).hex())
                sent, records = plan_image(image)
                out.extend(records)
                if sent is not None:
                    asked.append(sent)
            else:
                kept.append(item)
        if self.deduper is not None and asked:
            for left, copies in self.deduper.admit_batch(asked):
                out.extend(copies)
                if left is not None:
                    kept.append(left)
        else:
            kept.extend(asked)
        triage = self.preparer.triage
        for item in kept:
            if isinstance(item, LoadedImage):
                got = triage(item)
                if isinstance(got, InputError):
                    out.extend(self.refused(item.job, got, [ask.task for ask in item.asks], item.digest))
                else:
                    out.append(got)
            else:
                out.append(item)
        return out

    async def reader(self, batches: Iterator[list[ImageJob]]) -> None:
        while (got := await anyio.to_thread.run_sync(self.next_batch, batches)) is not None:
            if self.scan_records:
                self.flush_scan_records()
            jobs, loaded, rest = got
            self.stats.found += len(jobs)
            await self.hand_over(loaded)
            for chunk in rest:
                await self.hand_over(await anyio.to_thread.run_sync(self.load_chunk, chunk))
        if self.scan_records:
            self.flush_scan_records()
        if not self.scan_done.is_set():
            self.scan_done.set()
            self.stats.skipped = len(self.index)  # less the stale ones asked again, once all are read
            if self.on_scan_done:
                self.on_scan_done()

    async def hand_over(self, loaded: list[Handed]) -> None:
        """Read images to the senders (those that need pixel work through the pool first), records to the sink.

        The progress bar counts answers: one per ask, per record made here, per task of an unreadable file.
        """
        good: list[LoadedImage] = []
        heavy: list[LoadedImage] = []
        expected = 0
        needs_pixels = self.preparer.needs_pixels
        for item in loaded:
            if isinstance(item, LoadedImage):
                expected += len(item.asks)
                (heavy if needs_pixels(item) else good).append(item)
            elif isinstance(item, Record):
                expected += 1
                self.sink.put(item)
            else:
                job, err = item
                for record in self.refused(job, err, self.planner.open_tasks(job.path)):
                    expected += 1
                    self.sink.put(record)
        if expected:
            self.progress.found(expected)
        if good:
            await self.feed.put(good)
        if heavy:
            await self.prepare_all(heavy)

    def refused(self, job: ImageJob, err: InputError, tasks: Iterable[str], digest: str | None = None
                ) -> list[Record]:
        """A file that cannot be sent: an error record per task it was to be asked, and the same for the copies
        that waited for it (thread-safe: the readers call it for what a header refuses)."""
        out = []
        info = error_info(err, retryable=False)
        for task in tasks:
            record = Record(job.path, "error", error=info, target=self.captioner.target, ts=time.time(), task=task,
                            digest=digest)
            out.append(record)
            if self.deduper is not None:
                out.extend(self.deduper.resolved(record))
        return out

    async def prepare_all(self, images: list[LoadedImage]) -> None:
        """Images that need pixel work, on the pool's threads (at most one per core at a time); each goes to
        the senders as soon as it is ready, so sending never waits for a whole batch."""
        finish = self.preparer.finish

        async def one(image: LoadedImage) -> None:
            try:
                ready = await finish(image)
            except InputError as err:  # kept without its traceback: it held the decoder's frames and pixels
                for record in self.refused(image.job, as_value(err), [ask.task for ask in image.asks], image.digest):
                    self.sink.put(record)
                return
            await self.feed.put([ready])

        async with anyio.create_task_group() as tg:
            for image in images:
                tg.start_soon(one, image)

    async def sender(self) -> None:
        """Caption images from the feed until it is empty, or until a draining stop (see ``send_until``)."""
        try:
            await self.send_until_stopped()
        except RunAborted as exc:
            if not drains_first(exc.kind):  # the guard's verdict: stop at once, or let what is in flight finish
                raise
            if not any(isinstance(f, RunAborted) and f.kind == exc.kind for f in self.failures):
                self.failures.append(exc)  # the first sender to be refused speaks for all
                self.drain()  # nothing new starts; requests in flight finish and are written
            self.put_released()  # what the stop kept (a paid-for caption), then stop

    async def send_until_stopped(self) -> None:
        captioner = self.captioner
        feed, sink, caption, released = self.feed, self.sink, captioner.caption, captioner.released
        pop, next_image, put, room = feed.pop, feed.next, sink.put, sink.wait_room
        resolved = self.deduper.resolved if self.deduper is not None else None

        def answered(record: Record) -> None:
            put(record)
            if resolved is not None:
                for copy in resolved(record):  # copies that waited for this original
                    put(copy)

        deliver = answered if resolved is not None else put
        while (image := pop()) is not None or (image := await next_image()) is not None:
            if self.draining:
                break
            await caption(image, deliver)
            if released:  # held-back errors, now safe to write (the first caption arrived)
                self.put_released()
            if sink.full:  # the journal is behind (a slow disk): wait rather than pile records up
                await room()

    def put_released(self) -> None:
        """Records the captioner handed back outside ``caption()`` (held errors, what a stop kept), and their copies."""
        released, put = self.captioner.released, self.sink.put
        resolved = self.deduper.resolved if self.deduper is not None else None
        while released:
            held = released.pop()
            put(held)
            if resolved is not None:
                for copy in resolved(held):
                    put(copy)

    # -- writing ---------------------------------------------------------------------------------------------

    async def write_loop(self) -> None:
        """The writer task: journal each batch (in a thread), then count it and show it."""
        stats, progress = self.stats, self.progress
        boilerplate = stats.boilerplate.add
        while (batch := await self.sink.take()) is not None:
            await anyio.to_thread.run_sync(self.write_batch, batch)
            ok = 0
            spend = stats.spend.add
            for rec in batch:
                if rec.cost_usd is not None or rec.usage is not None:
                    spend(rec)
                if rec.flags:
                    stats.flags.update(rec.flags)
                    stats.flagged += rec.status == "ok"
                if rec.duplicate_of is not None:
                    stats.duplicates += 1
                if rec.status == "ok":
                    ok += 1
                    if (prep := rec.prep) is not None:
                        if prep.prepared:
                            stats.prepared += 1
                        else:
                            stats.passed += 1
                        stats.original_bytes += prep.original_bytes
                        stats.prepared_bytes_sent += rec.bytes_sent
                        sent = (prep.width, prep.height)
                        if below_useful_size((prep.original_width, prep.original_height), sent):
                            stats.undersized += 1
                            if stats.smallest_sent is None or max(sent) < max(stats.smallest_sent):
                                stats.smallest_sent = sent
                    if rec.duplicate_of is None and rec.caption and rec.task == self.primary \
                            and rec.task in self.text_tasks:
                        boilerplate(rec.caption, rec.path)
                else:
                    error = rec.error
                    stats.errors_by_type[error.type if error else "?"] += 1
                    if len(stats.failed_examples) < FAILED_EXAMPLES:
                        stats.failed_examples.append((rec.path, error.type if error else "?",
                                                      error.message if error else ""))
                if self.count_targets:
                    stats.by_target.setdefault(rec.target, Counter())[rec.status] += 1
                stats.by_task.setdefault(rec.task, Counter())[rec.status] += 1
            stats.ok += ok
            stats.failed += len(batch) - ok
            if ok < len(batch):
                progress.errors(stats.errors_by_type)
            if (note := self.captioner.concurrency_note()) is not None:
                progress.concurrency(note)
            progress.done(ok, len(batch) - ok)

    def write_batch(self, batch: list[Record]) -> None:
        """In a worker thread: append to the journal (and its periodic fdatasync), write sidecars.

        Only the writer task calls this, one call at a time.
        """
        self.writer.write(batch)
        if self.sidecars is not None:
            for rec in batch:
                if rec.task == self.primary:  # --sidecar writes one task's answers (the plan's primary)
                    self.sidecars.write(rec)
