"""One image's tasks, back to back on one target; per task its attempts: pass the gates, ask once, and let the
circuit, the guard and the policy judge each failure.

    while True:
    for ask in image.asks:       (one per task still to answer; ``batchcap.run.plan``)
        await admission.admit()  -> client.caption(image, task's adapter, rendered prompt)
                                 -> ok: quality.judge(caption) (a schema task: judge_json, the parsed "data")
                                    good: Record("ok"); flagged: again (up to --quality-retries, a chat target
                                    a little warmer each time), then Record("ok", flags) or BadCaption
        failure: admission.failed (slept? circuit open?) -> guard.after_attempt (run-level stop?)
                 -> circuit open: wait for it, free (and the retries this outage cost are given back)
                 -> policy.decide (retry or record)
                 -> record: guard.before_record (N identical refusals?) -> Record("error")
                 -> retry: sleep the decision's delay

A run-level stop raises ``RunAborted`` (the task being asked gets no record, so the next run asks it again; the
tasks answered before it were handed over already); a drain (the first Ctrl-C) lets the request in flight finish
and starts no other; everything else ends as exactly one ``Record`` per task.

Money (issue 18): with a ``Meter`` each attempt is priced into the image's ``Bill`` (the record's ``usage``,
``provider``, ``cost_usd``); with a ``BudgetGate`` (``--max-cost``, ``--max-images``) each attempt first reserves
its worst case (``budget -> admission -> request``) and settles with its actual cost. A refused reservation stops
the run (kind ``budget``): an image already paid for still gets its record. Each task has its own bill; the image
counts once (``--max-images``), with its first task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import anyio

from batchcap.errors import (
    APIError,
    BudgetReached,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RunAborted,
)
from batchcap.flow.admit import Admission, Pass, is_unreachable
from batchcap.flow.budget import BudgetGate
from batchcap.flow.circuit import CircuitSettings
from batchcap.flow.concurrency import AdaptiveLimit, ConcurrencyLimiter, outcome_of, timeout_retry_delay
from batchcap.flow.ratelimit import Limiter
from batchcap.flow.retry import ImageRetries, RetryPolicy
from batchcap.flow.suspend import SuspendDetector
from batchcap.models import DEFAULT_TASK, Ask, LoadedImage, Record
from batchcap.progress import Progress
from batchcap.run.captions import Captions, Put, TaskAsk
from batchcap.run.guard import RunGuard, Stop, budget_stop, unpriced_stop
from batchcap.run.records import (
    RecordTag,
    bad_caption_record,
    error_info,
    failure_record,
    ok_record,
    quota_note,
)
from batchcap.run.spend import Bill, Meter
from batchcap.run.stats import RunStats
from batchcap.service.client import Reply, ServiceClient
from batchcap.service.protocols import Adapter, OpenAIChat
from batchcap.tasks.quality import QualitySettings, judge, judge_json
from batchcap.types import Sleep

__all__ = ["Captioner", "Captions", "Put", "TaskAsk", "error_info"]  # the seam types re-exported

def abort(stop: Stop) -> RunAborted:
    return RunAborted(stop.message, kind=stop.kind)


#: ``_answered``'s answer for "the caption failed the quality gates: ask again" (never written).
_AGAIN = Record("", "ok")


class Captioner:
    """The per-run machinery every sender of one target shares: one client, one admission (circuit, limits,
    pace), one policy, one guard."""

    __slots__ = ("_halt", "_waits", "_warmer", "admission", "budget", "client", "guard", "meter", "policy",
                 "progress", "prompt", "quality", "released", "rng", "senders", "sleep", "stats", "target", "tasks")

    def __init__(
        self, client: ServiceClient, *, limiter: Limiter, policy: RetryPolicy, guard: RunGuard,
        stats: RunStats, progress: Progress, target: str, seed: int | None = None, senders: int = 1,
        released: list[Record] | None = None, concurrency: ConcurrencyLimiter | None = None,
        quality: QualitySettings | None = None, prompt: str | None = None,
        circuit: CircuitSettings | None = None, suspend: SuspendDetector | None = None,
        meter: Meter | None = None, budget: BudgetGate | None = None, tasks: Mapping[str, TaskAsk] | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.client = client
        self.admission = Admission(limiter=limiter, concurrency=concurrency, circuit=circuit, suspend=suspend,
                                   longest_wait=policy.longest_wait, sleep=sleep)
        self.sleep = sleep  #: ``anyio.sleep``, or a test's fake that advances a fake clock
        self.policy = policy
        self.guard = guard
        self.stats = stats
        self.progress = progress
        self.target = target  # formatted once per run, not per record
        self.rng = random.Random(seed)
        self.released: list[Record] = [] if released is None else released
        self.senders = senders
        #: None: no gate can flag anything, so captions are not judged at all
        self.quality = quality if quality is not None and quality.any_gate else None
        self.prompt = prompt  #: the prompt of an image without asks (chat targets); None for pipelines
        #: per task: adapter, schema, fingerprints (without a plan: the one default task on the client's adapter)
        self.tasks: dict[str, TaskAsk] = dict(tasks) if tasks else {DEFAULT_TASK: TaskAsk(client.adapter)}
        self._warmer: dict[tuple[str, int], Adapter] = {}  # (task, quality retry) -> the chat adapter, warmer
        self.sleep = sleep  #: the wait between attempts (a test passes a fake clock's)
        #: prices each attempt (None: the target reports no usage and has no price: nothing to record)
        self.meter = meter if meter is not None or budget is None else Meter(target)
        self.budget = budget  #: the run's caps, shared by every target (None: no --max-cost / --max-images)
        self._halt: Stop | bool = False  # True: draining; a Stop: this target stopped (no attempt starts)
        self._waits: set[anyio.CancelScope] = set()  # waits to cut short when the run drains or stops

    @property
    def limiter(self) -> Limiter:
        return self.admission.limiter

    @property
    def concurrency(self) -> ConcurrencyLimiter | None:
        """The adaptive limit in front of every attempt (None for fixed:N)."""
        return self.admission.concurrency

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        conc = self.concurrency
        if conc is not None and self.client.capacity and isinstance(conc.algorithm, AdaptiveLimit):
            conc.algorithm.start_at(self.client.capacity)  # a Space's own limit: more would only queue there
        await self._schema_spelling()
        return self

    async def _schema_spelling(self) -> None:
        """A chat server known to be TGI takes ``response_format`` in its own spelling (``batchcap.tasks.schema``):
        asked once, and only when a task has a schema."""
        chat = {name: (t, t.schema, t.adapter) for name, t in self.tasks.items()
                if t.schema is not None and isinstance(t.adapter, OpenAIChat)}
        if not chat or await self.client.server_kind() != "tgi":
            return
        for name, (t, schema, base) in chat.items():
            if schema is not None and isinstance(base, OpenAIChat):
                adapter = dataclasses.replace(base, response_format=schema.response_format("tgi"))
                self.tasks[name] = dataclasses.replace(t, adapter=adapter)
        self.progress.note("the chat server is TGI: JSON schemas go in its own response_format spelling")

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.close()

    # -- the run's control: drain, stop, the watchdog ---------------------------------------------------------

    def drain(self) -> None:
        """No attempt starts from now on; waits end at once; requests in flight finish."""
        if self._halt is False:
            self._halt = True
        self._cut_waits()

    def stop(self, stop: Stop) -> None:
        """This target stopped (a run-level verdict that came with time): waiting senders raise it."""
        self._halt = stop
        self._cut_waits()

    def _cut_waits(self) -> None:
        for scope in list(self._waits):
            scope.cancel()

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[anyio.CancelScope]:
        """A wait that a drain or a stop cuts short (``scope.cancelled_caught`` then tells)."""
        with anyio.CancelScope() as scope:
            if self._halt is not False:
                scope.cancel()
            self._waits.add(scope)
            try:
                yield scope
            finally:
                self._waits.discard(scope)

    def _halted(self) -> None:
        """At a point where no attempt may start: a stop raises; a drain returns (the image gets no record)."""
        if isinstance(self._halt, Stop):
            raise abort(self._halt)

    def check(self) -> None:
        """The watchdog's second: nothing but failures for ``--max-wait`` stops this target."""
        if (stop := self.guard.tick()) is not None:
            self.stop(stop)
            raise abort(stop)

    def slept(self, seconds: float) -> None:
        self.guard.slept(seconds)

    def status_note(self) -> str | None:
        return self.admission.note()

    def finish(self) -> list[Record]:
        """The run ran out of images: every image refused alike stops it; else the held records are real."""
        if (stop := self.guard.at_end()) is not None:
            raise abort(stop)
        return self.guard.release()

    # -- one image -------------------------------------------------------------------------------------------

    async def caption(self, image: LoadedImage, put: Put) -> None:
        """Every task of ``image`` in turn, each record handed to ``put`` as soon as it is made."""
        for i, ask in enumerate(image.asks or (Ask(DEFAULT_TASK, self.prompt),)):
            record = await self.ask(image, ask, first_task=i == 0)
            if record is not None:
                put(record)
            if self._halt is not False:  # draining: the image's other tasks wait for the next run
                return

    async def ask(self, image: LoadedImage, ask: Ask | None = None, *, first_task: bool = True) -> Record | None:
        """One task's attempts until an answer, a final error, or a run-level stop (raised as ``RunAborted``).

        None: no record now: the guard holds the task's final error (see ``guard``), or the run is draining.
        ``ask``: which task, and its prompt for this image (None: the default task with the run's prompt).
        ``first_task``: the image counts against --max-images with its first task only.
        """
        ask = ask or Ask(DEFAULT_TASK, self.prompt)
        if self.budget is None:
            return await self._attempts(image, ask, Bill() if self.meter is not None else None, first_task)
        bill = Bill()
        record: Record | None = None
        try:
            record = await self._attempts(image, ask, bill, first_task)
            return record
        finally:
            if bill.images_reserved:  # the image counts (for --max-images) once it has its final record
                done = bill.released_done or (
                    record is not None and not (record.error is not None and record.error.retryable))
                self.budget.settle_images(bill.images_reserved, int(done))

    async def _attempts(self, image: LoadedImage, ask: Ask, bill: Bill | None, first_task: bool) -> Record | None:
        task = self.tasks[ask.task]
        attempts = quality_used = 0
        cost = ImageRetries()
        reply: Reply | None = None  # the last caption, kept for a quality retry the budget refuses
        failed: APIError | None = None  # the last failure, for a retry the budget refuses
        while True:
            if self._halt is not False:
                self._halted()
                return None
            attempts += 1
            try:
                asked = await self._ask(image, self._adapter_for(ask.task, task.adapter, quality_used), ask.prompt,
                                        bill=bill, first=first_task and attempts == 1)
            except BudgetReached:
                raise self._stopped_by_budget(image, ask, bill, reply, failed, attempts - 1) from None
            if asked is None:  # a drain or a stop cut the wait for the gates short
                self._halted()
                return None
            got, p = asked
            if isinstance(got, APIError):
                failed = got
                done, record = await self._failed(image, ask, got, p, attempts, cost, bill)
                if done:
                    return record
                continue
            reply, failed = got, None
            record = self._answered(image, ask, got, p, attempts, quality_used, bill)
            if record is _AGAIN:  # a caption that failed the quality gates: once more
                quality_used += 1
                self.stats.quality_retries += 1
                continue
            return record

    async def _failed(self, image: LoadedImage, ask: Ask, exc: APIError, p: Pass, attempts: int, cost: ImageRetries,
                      bill: Bill | None) -> tuple[bool, Record | None]:
        """One failed attempt: ``(True, record)`` when the image is done (None: no record now), ``(False,
        None)`` to try again."""
        verdict = self.admission.failed(p, exc)
        if verdict == "slept":  # in flight while the machine slept: says nothing, costs nothing
            self.stats.retries += 1
            return False, None
        if isinstance(exc, RateLimited):
            self._throttled(exc)
        elif isinstance(exc, QueueFull):
            self._queue_full(exc)
        if (stop := self.guard.after_attempt(exc, image.job.path)) is not None:
            raise abort(stop) from None
        if self._halt is not False:  # draining: no retry; the next run sends it
            self._halted()
            return True, None
        circuit = self.admission.breaker.circuit
        if verdict == "open":  # an outage (or a spent quota): wait for the circuit, free
            cost.refund(circuit.spell)
            self.stats.retries += 1
            return False, None
        decision = self.policy.decide(exc, retries_used=cost.retries, waited=cost.waited, rand=self.rng.random)
        if decision.action != "retry":
            stop, record = self.guard.before_record(exc, failure_record(image, exc, attempts, bill, self.target,
                                                                      tag=self._tag(ask)))
            if stop is not None:
                raise abort(stop) from None
            return True, record
        self.stats.retries += 1
        if decision.spends_retry:
            cost.spend(circuit.spell if is_unreachable(exc) else None)
        else:
            cost.waited += decision.delay
        if not await self._pause(self._retry_delay(exc, decision.delay)):
            self._halted()
            return True, None
        return False, None

    def _answered(self, image: LoadedImage, ask: Ask, reply: Reply, p: Pass, attempts: int, quality_used: int,
                  bill: Bill | None) -> Record | None:
        """A 2xx: tell the gates and the guard; the record to write (None: held; ``_AGAIN``: ask again)."""
        self.admission.answered(p, reply.quota)
        guard = self.guard
        guard.succeeded()
        self.stats.bytes_sent += reply.bytes_sent
        self.stats.latencies_sum += reply.latency_s
        if bill is not None and bill.unpriced and self.budget is not None and self.budget.budget.max_cost:
            raise self._stopped_unpriced(image, ask, reply, attempts, bill)
        data, flags = self._judge(self.tasks[ask.task], ask, reply)
        if flags and self.quality is not None:
            if self._halt is False and quality_used < self.quality.quality_retries:
                self._take_ready()
                return _AGAIN
            if self.quality.on_bad_caption == "error":
                self._take_ready()
                return bad_caption_record(image, reply, flags, attempts, bill, self.target, tag=self._tag(ask))
        stop, kept = guard.before_ok(ok_record(image, reply, attempts, flags, bill, self.target, tag=self._tag(ask),
                                               data=data))
        if stop is not None:
            raise abort(stop)
        self._take_ready()
        return kept

    def _judge(self, task: TaskAsk, ask: Ask, reply: Reply) -> tuple[Any, tuple[str, ...]]:
        """(data, flags): a schema task's parsed reply and its gates; a text task's gates (no data)."""
        if task.schema is not None:
            return judge_json(reply.caption, task.schema, finish_reason=reply.finish_reason,
                              settings=self.quality or QualitySettings())
        if self.quality is None:
            return None, ()
        prompt = ask.prompt if isinstance(task.adapter, OpenAIChat) else None
        return None, judge(reply.caption, finish_reason=reply.finish_reason, prompt=prompt, settings=self.quality)

    def _tag(self, ask: Ask) -> RecordTag:
        """What a task's record says of what was asked: the task and the fingerprint of its settings."""
        task = self.tasks[ask.task]
        return RecordTag(ask.task, None if task.print is None else task.print.fingerprint(ask.prompt))

    def _stopped_by_budget(self, image: LoadedImage, ask: Ask, bill: Bill | None, reply: Reply | None,
                           failed: APIError | None, attempts: int) -> RunAborted:
        """A refused reservation: nothing more starts. An image already paid for keeps what it got (the senders
        write ``released``): the caption a quality retry wanted to better, or its last billed failure, retryable."""
        if reply is not None:
            data, flags = self._judge(self.tasks[ask.task], ask, reply)
            self.released.append(ok_record(image, reply, attempts, flags, bill, self.target, tag=self._tag(ask),
                                           data=data))
            if bill is not None:
                bill.released_done = True
        elif failed is not None and bill is not None and (bill.priced or bill.usage is not None):
            self.released.append(failure_record(image, failed, attempts, bill, self.target, retryable=True,
                                                tag=self._tag(ask)))
        assert self.budget is not None
        return abort(budget_stop(self.budget.budget))

    def _stopped_unpriced(self, image: LoadedImage, ask: Ask, reply: Reply, attempts: int, bill: Bill) -> RunAborted:
        """Under --max-cost an answer came back whose cost is not known: keep it, start nothing more."""
        assert self.meter is not None
        data, _ = self._judge(self.tasks[ask.task], ask, reply)
        self.released.append(ok_record(image, reply, attempts, (), bill, self.target, tag=self._tag(ask), data=data))
        bill.released_done = True
        return abort(unpriced_stop(self.target, self.meter.notes))

    def _take_ready(self) -> None:
        if self.guard.ready:
            self.released.extend(self.guard.release())

    def _adapter_for(self, task: str, base: Adapter, quality_retry: int) -> Adapter:
        """The adapter of a quality retry: a chat target a little warmer each time, the others unchanged."""
        if not quality_retry or self.quality is None or not isinstance(base, OpenAIChat):
            return base
        adapter = self._warmer.get((task, quality_retry))
        if adapter is None:
            warmer = self.quality.temperature_for(base.temperature, quality_retry)
            adapter = self._warmer[(task, quality_retry)] = dataclasses.replace(base, temperature=warmer)
        return adapter

    async def _ask(self, image: LoadedImage, adapter: Adapter, prompt: str | None, *, bill: Bill | None = None,
                   first: bool = False) -> tuple[Reply | APIError, Pass] | None:
        """One attempt, priced into ``bill`` when the target has a meter, reserved first under a budget (its
        ``BudgetReached`` means nothing was sent); None if a drain or a stop cut the waits short."""
        meter = self.meter
        if meter is None or bill is None:
            return await self._send(image, adapter, prompt)
        gate = self.budget
        reserved = 0.0
        if gate is not None:
            images = 1 if first else 0  # the image is counted (and capped, with --max-images) once
            with self._interruptible() as scope:
                reserved = await gate.reserve(meter.reserve, images)
            if scope.cancelled_caught:
                return None
            bill.images_reserved += images
        meter.begin()
        try:
            asked = await self._send(image, adapter, prompt)
        except BaseException:  # cancelled: costs nothing
            if gate is not None:
                gate.settle(reserved, 0.0)
            raise
        actual = 0.0
        if asked is not None:  # a failed attempt may still cost (an Endpoint's time)
            got = asked[0]
            actual = meter.charge(bill, got if isinstance(got, Reply) else None)
        if gate is not None:
            gate.settle(reserved, actual)
        return asked

    async def _send(self, image: LoadedImage, adapter: Adapter, prompt: str | None
                    ) -> tuple[Reply | APIError, Pass] | None:
        """One HTTP attempt through the gates; None if a drain or a stop cut the wait for them short."""
        p, took = self.admission.try_admit()
        if p is None:
            with self._interruptible() as scope:
                p = await self.admission.admit(token_taken=took)
            if scope.cancelled_caught:
                return None
        self.stats.attempts += 1
        try:
            reply = await self.client.caption(image, adapter=adapter, prompt=prompt)
        except APIError as exc:
            return exc, p
        except BaseException:
            self.admission.abandon(p)
            raise
        return reply, p

    async def _pause(self, delay: float) -> bool:
        """Sleep before a retry; False if a drain or a stop cut it short."""
        if delay <= 0:
            return True
        with self._interruptible() as scope:
            await self.sleep(delay)
        return not scope.cancelled_caught

    def _retry_delay(self, exc: APIError, delay: float) -> float:
        """After a timeout, wait until the server is likely free of our abandoned request, not on top of it."""
        conc = self.concurrency
        if conc is None or outcome_of(exc) != "timeout":
            return delay
        return max(delay, timeout_retry_delay(conc.stats().floor, conc.inflight, conc.limit))

    def concurrency_note(self) -> str | None:
        """``c=3/16`` for the progress bar while the limit is adaptive."""
        conc = self.concurrency
        return None if conc is None else f"c={conc.limit}/{conc.algorithm.ceiling}"

    def _throttled(self, exc: RateLimited) -> None:
        """A 429 (the admission already slowed the pool down, or paused it for a spent GPU quota): count it,
        say so."""
        self.stats.throttled += 1
        if isinstance(exc, QuotaExhausted):
            self.progress.note(quota_note(exc))
            return
        rate = self.limiter.bucket.rate
        self.progress.note(f"rate-limited: now {rate:.2g} req/s" if rate else "rate-limited")

    def _queue_full(self, exc: QueueFull) -> None:
        """A Space's full queue: push-back (the adaptive limit cuts), said on the progress line."""
        self.stats.throttled += 1
        self.progress.note("queue full: waiting")
