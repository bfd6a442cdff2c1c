"""One image's tasks, back to back on one target; per task its attempts: acquire a token, ask once, and let the
policy and the guard judge each failure.

    for ask in image.asks:       (one per task still to answer; ``batchcap.run.plan``)
      while True:
        await limiter            -> client.caption(image, task's adapter, rendered prompt)
                                 -> ok: quality.judge(caption) (a schema task: judge_json, the parsed "data")
                                    good: Record("ok"); flagged: again (up to --quality-retries, a chat target
                                    a little warmer each time), then Record("ok", flags) or BadCaption
        failure: guard.after_attempt (run-level stop?) -> policy.decide (retry or record)
                 -> record: guard.before_record (N identical refusals?) -> Record("error")
                 -> retry: sleep the decision's delay

A run-level stop raises ``RunAborted`` (the task being asked gets no record, so the next run asks it again; the
tasks answered before it were handed over already); everything else ends as exactly one ``Record`` per task.

Money (issue 18): with a ``Meter`` each attempt is priced into the image's ``Bill`` (the record's ``usage``,
``provider``, ``cost_usd``); with a ``BudgetGate`` (``--max-cost``, ``--max-images``) each attempt first reserves
its worst case (``budget -> concurrency slot -> rate token -> request``) and settles with its actual cost. A
refused reservation stops the run (kind ``budget``): an image already paid for still gets its record. Each task
has its own bill; the image counts once (``--max-images``), with its first task.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import anyio

from batchcap.errors import (
    APIError,
    BadCaption,
    BatchcapError,
    BudgetReached,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RunAborted,
    TransientError,
)
from batchcap.flow.budget import BudgetGate
from batchcap.flow.concurrency import (
    AdaptiveLimit,
    ConcurrencyLimiter,
    Outcome,
    outcome_of,
    timeout_retry_delay,
)
from batchcap.flow.ratelimit import Limiter
from batchcap.flow.retry import RetryPolicy
from batchcap.models import DEFAULT_TASK, Ask, ErrorInfo, LoadedImage, Record
from batchcap.progress import Progress
from batchcap.run.guard import RunGuard, Stop, budget_stop, unpriced_stop
from batchcap.run.spend import Bill, Meter
from batchcap.run.stats import RunStats
from batchcap.service.client import Reply, ServiceClient
from batchcap.service.protocols import Adapter, OpenAIChat
from batchcap.tasks.fingerprint import TaskPrint
from batchcap.tasks.quality import QualitySettings, judge, judge_json
from batchcap.tasks.schema import Schema
from batchcap.types import Sleep
from batchcap.words import plural

__all__ = ["Captioner", "Captions", "Put", "TaskAsk", "error_info"]

#: Where a task's record goes the moment it is made (the senders' sink and the copies waiting for it).
Put = Callable[[Record], None]


@dataclass(frozen=True, slots=True)
class TaskAsk:
    """How one target asks one task: its adapter (generation settings, ``response_format``), its schema, and
    the fingerprints its answers carry (None: records without one, for callers that have no plan)."""

    adapter: Adapter
    schema: Schema | None = None
    print: TaskPrint | None = None



class Captions(Protocol):
    """What the senders call: one target (``Captioner``) or several (``route.Router``)."""

    #: records the guard held back and released: the senders write them.
    released: list[Record]
    #: the name written into records that belong to no request (unreadable files).
    target: str
    #: how many senders keep it busy.
    senders: int

    async def caption(self, image: LoadedImage, put: Put) -> None:
        """Ask every ``image.asks`` (back to back, one target), handing each task's record to ``put``."""
        ...

    def release_held(self) -> list[Record]: ...

    def concurrency_note(self) -> str | None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def error_info(exc: BatchcapError, *, retryable: bool) -> ErrorInfo:
    """The journal's view of an error: its class name, the message, the HTTP status."""
    status = exc.status if isinstance(exc, APIError) else None
    message = exc.message if isinstance(exc, APIError) else str(exc)
    return ErrorInfo(type(exc).__name__, message, status, retryable)


def quota_note(exc: QuotaExhausted) -> str:
    """The progress line while a Space's GPU quota is spent: how long until it comes back, and when."""
    from batchcap.service.space.words import format_wait

    if exc.retry_after is None:
        return "GPU quota spent: waiting (the Space named no time)"
    at = "" if exc.resets_at is None else time.strftime(" (at %H:%M)", time.localtime(exc.resets_at))
    return f"GPU quota spent: waiting {format_wait(exc.retry_after)}{at}"


def abort(stop: Stop) -> RunAborted:
    return RunAborted(stop.message, kind=stop.kind)


class Captioner:
    """The per-run machinery every sender shares: one client, one limiter, one policy, one guard."""

    __slots__ = ("_warmer", "budget", "client", "concurrency", "guard", "limiter", "meter", "policy", "progress",
                 "prompt", "quality", "released", "rng", "senders", "sleep", "stats", "target", "tasks",
                 "try_acquire")

    def __init__(
        self, client: ServiceClient, *, limiter: Limiter, policy: RetryPolicy, guard: RunGuard,
        stats: RunStats, progress: Progress, target: str, seed: int | None = None, senders: int = 1,
        released: list[Record] | None = None, concurrency: ConcurrencyLimiter | None = None,
        quality: QualitySettings | None = None, prompt: str | None = None, meter: Meter | None = None,
        budget: BudgetGate | None = None, tasks: Mapping[str, TaskAsk] | None = None, sleep: Sleep = anyio.sleep,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.try_acquire = limiter.try_acquire  # unlimited and unpaused: a token without a coroutine
        self.policy = policy
        self.guard = guard
        self.stats = stats
        self.progress = progress
        self.target = target  # formatted once per run, not per record
        self.rng = random.Random(seed)
        self.released: list[Record] = [] if released is None else released
        self.senders = senders
        self.concurrency = concurrency  #: the adaptive limit in front of every attempt (None for fixed:N)
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

    def release_held(self) -> list[Record]:
        """At the end of a run without a stop: the final errors the guard held back are real."""
        return self.guard.release()

    async def caption(self, image: LoadedImage, put: Put) -> None:
        """Every task of ``image`` in turn, each record handed to ``put`` as soon as it is made."""
        for i, ask in enumerate(image.asks or (Ask(DEFAULT_TASK, self.prompt),)):
            record = await self.ask(image, ask, first_task=i == 0)
            if record is not None:
                put(record)

    async def ask(self, image: LoadedImage, ask: Ask | None = None, *, first_task: bool = True) -> Record | None:
        """One task's attempts until an answer, a final error, or a run-level stop (raised as ``RunAborted``).

        None: the task's final error is held by the guard (see ``guard``), to be written later or never.
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
        attempts = retries_used = quality_used = 0
        waited = 0.0
        reply: Reply | None = None  # the last caption, kept for a quality retry the budget refuses
        failed: APIError | None = None  # the last failure, for a retry the budget refuses
        while True:
            attempts += 1
            try:
                answer = await self._ask(image, self._adapter_for(ask.task, task.adapter, quality_used), ask.prompt,
                                         bill=bill, first=first_task and attempts == 1)
            except BudgetReached:
                raise self._stopped_by_budget(image, ask, bill, reply, failed, attempts - 1) from None
            except APIError as exc:
                failed = exc
                if isinstance(exc, RateLimited):
                    self._throttled(exc)
                elif isinstance(exc, QueueFull):
                    self._queue_full(exc)
                if (stop := self.guard.after_attempt(exc)) is not None:
                    raise abort(stop) from None
                decision = self.policy.decide(exc, retries_used=retries_used, waited=waited, rand=self.rng.random)
                if decision.action != "retry":
                    stop, record = self.guard.before_record(exc, self._failure(image, ask, exc, attempts, bill))
                    if stop is not None:
                        raise abort(stop) from None
                    return record
                self.stats.retries += 1
                if decision.spends_retry:
                    retries_used += 1
                else:
                    waited += decision.delay
                if (delay := self._retry_delay(exc, decision.delay)) > 0:
                    await self.sleep(delay)
                continue
            reply, failed = answer, None
            self.limiter.succeeded()
            if held := self.guard.succeeded():
                self.released.extend(held)
            self.stats.bytes_sent += reply.bytes_sent
            self.stats.latencies_sum += reply.latency_s
            if bill is not None and bill.unpriced and self.budget is not None and self.budget.budget.max_cost:
                raise self._stopped_unpriced(image, ask, reply, attempts, bill)
            data, flags = self._judge(task, ask, reply)
            if flags and self.quality is not None:
                if quality_used < self.quality.quality_retries:
                    quality_used += 1
                    self.stats.quality_retries += 1
                    continue
                if self.quality.on_bad_caption == "error":
                    return self._bad_caption(image, ask, reply, flags, attempts, bill)
            return self._ok(image, ask, reply, attempts, flags, bill, data)

    def _judge(self, task: TaskAsk, ask: Ask, reply: Reply) -> tuple[Any, tuple[str, ...]]:
        """(data, flags): a schema task's parsed reply and its gates; a text task's gates (no data)."""
        if task.schema is not None:
            return judge_json(reply.caption, task.schema, finish_reason=reply.finish_reason,
                              settings=self.quality or QualitySettings())
        if self.quality is None:
            return None, ()
        prompt = ask.prompt if isinstance(task.adapter, OpenAIChat) else None
        return None, judge(reply.caption, finish_reason=reply.finish_reason, prompt=prompt, settings=self.quality)

    def _fingerprint(self, ask: Ask) -> str | None:
        task = self.tasks[ask.task]
        return None if task.print is None else task.print.fingerprint(ask.prompt)

    def _ok(self, image: LoadedImage, ask: Ask, reply: Reply, attempts: int, flags: tuple[str, ...],
            bill: Bill | None, data: Any = None) -> Record:
        return Record(
            image.job.path, "ok", caption=reply.caption, attempts=attempts,
            latency_s=round(reply.latency_s, 4), bytes_sent=reply.bytes_sent, target=self.target,
            request_id=reply.request_id, ts=time.time(), flags=flags, prep=image.prep,
            usage=bill.usage if bill else None, provider=bill.provider if bill else None,
            cost_usd=bill.cost_usd if bill else None,
            task=ask.task, data=data, fingerprint=self._fingerprint(ask), digest=image.digest,
        )

    def _stopped_by_budget(self, image: LoadedImage, ask: Ask, bill: Bill | None, reply: Reply | None,
                           failed: APIError | None, attempts: int) -> RunAborted:
        """A refused reservation: nothing more starts. An image already paid for keeps what it got (the senders
        write ``released``): the caption a quality retry wanted to better, or its last billed failure, retryable."""
        if reply is not None:
            data, flags = self._judge(self.tasks[ask.task], ask, reply)
            self.released.append(self._ok(image, ask, reply, attempts, flags, bill, data))
            if bill is not None:
                bill.released_done = True
        elif failed is not None and bill is not None and (bill.priced or bill.usage is not None):
            self.released.append(self._failure(image, ask, failed, attempts, bill, retryable=True))
        assert self.budget is not None
        return abort(budget_stop(self.budget.budget))

    def _stopped_unpriced(self, image: LoadedImage, ask: Ask, reply: Reply, attempts: int, bill: Bill) -> RunAborted:
        """Under --max-cost an answer came back whose cost is not known: keep it, start nothing more."""
        assert self.meter is not None
        data, _ = self._judge(self.tasks[ask.task], ask, reply)
        self.released.append(self._ok(image, ask, reply, attempts, (), bill, data))
        bill.released_done = True
        return abort(unpriced_stop(self.target, self.meter.notes))

    def _adapter_for(self, task: str, base: Adapter, quality_retry: int) -> Adapter:
        """The adapter of a quality retry: a chat target a little warmer each time, the others unchanged."""
        if not quality_retry or self.quality is None or not isinstance(base, OpenAIChat):
            return base
        adapter = self._warmer.get((task, quality_retry))
        if adapter is None:
            warmer = self.quality.temperature_for(base.temperature, quality_retry)
            adapter = self._warmer[(task, quality_retry)] = dataclasses.replace(base, temperature=warmer)
        return adapter

    def _bad_caption(self, image: LoadedImage, ask: Ask, reply: Reply, flags: tuple[str, ...], attempts: int,
                     bill: Bill | None = None) -> Record:
        """``--on-bad-caption error``: the caption is not kept; the error is final (a rerun would pay again)."""
        exc = BadCaption(f"caption failed the quality gates ({', '.join(flags)}) after {plural(attempts, 'attempt')}: "
                         f"{reply.caption[:80]!r}", flags=flags, status=reply.status, request_id=reply.request_id)
        return Record(
            image.job.path, "error", error=error_info(exc, retryable=False), attempts=attempts,
            latency_s=round(reply.latency_s, 4), bytes_sent=reply.bytes_sent, target=self.target,
            request_id=reply.request_id, ts=time.time(), flags=flags, usage=bill.usage if bill else None,
            provider=bill.provider if bill else None, cost_usd=bill.cost_usd if bill else None,
            task=ask.task, fingerprint=self._fingerprint(ask), digest=image.digest,
        )

    async def _ask(self, image: LoadedImage, adapter: Adapter, prompt: str | None, *, bill: Bill | None = None,
                   first: bool = False) -> Reply:
        """One attempt, priced into ``bill`` when the target has a meter, reserved first under a budget."""
        meter = self.meter
        if meter is None or bill is None:
            return await self._send(image, adapter, prompt)
        gate = self.budget
        reserved = 0.0
        if gate is not None:
            images = 1 if first else 0  # the image is counted (and capped, with --max-images) once
            reserved = await gate.reserve(meter.reserve, images)  # BudgetReached: nothing was sent
            bill.images_reserved += images
        meter.begin()
        try:
            reply = await self._send(image, adapter, prompt)
        except BaseException as exc:  # a failed attempt may still cost (an Endpoint's time); a cancel costs 0
            actual = meter.charge(bill) if isinstance(exc, APIError) else 0.0
            if gate is not None:
                gate.settle(reserved, actual)
            raise
        actual = meter.charge(bill, reply)
        if gate is not None:
            gate.settle(reserved, actual)
        return reply

    async def _send(self, image: LoadedImage, adapter: Adapter, prompt: str | None) -> Reply:
        """One HTTP attempt: a concurrency slot (when adaptive) then a rate token; the answer's RTT and kind
        feed the concurrency limit."""
        conc = self.concurrency
        if conc is None:  # fixed:N: the N senders are the limit, nothing to count
            if not self.try_acquire():
                await self.limiter.acquire()
            self.stats.attempts += 1
            return await self.client.caption(image, adapter=adapter, prompt=prompt)
        ticket = await conc.acquire()
        outcome: Outcome = "ignore"
        try:
            if not self.try_acquire():
                await self.limiter.acquire()
                ticket = conc.restart(ticket)  # the RTT is the server's time, not our wait for a token
            self.stats.attempts += 1
            reply = await self.client.caption(image, adapter=adapter, prompt=prompt)
            outcome = "ok"
            return reply
        except APIError as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            conc.release(ticket, outcome)

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
        """A 429: the whole pool slows down (and pauses, given a hint)."""
        self.stats.throttled += 1
        hint = exc.retry_after
        self.limiter.throttled(None if hint is None else min(hint, self.policy.longest_wait(exc)))
        if isinstance(exc, QuotaExhausted):
            self.progress.note(quota_note(exc))
            return
        rate = self.limiter.bucket.rate
        self.progress.note(f"rate-limited: now {rate:.2g} req/s" if rate else "rate-limited")

    def _queue_full(self, exc: QueueFull) -> None:
        """A Space's full queue: push-back (the adaptive limit cuts), said on the progress line."""
        self.stats.throttled += 1
        self.progress.note("queue full: waiting")

    def _failure(self, image: LoadedImage, ask: Ask, exc: APIError, attempts: int, bill: Bill | None = None, *,
                 retryable: bool | None = None) -> Record:
        retry = isinstance(exc, TransientError) if retryable is None else retryable
        return Record(
            image.job.path, "error", error=error_info(exc, retryable=retry),
            attempts=attempts, bytes_sent=len(image.data), target=self.target, request_id=exc.request_id,
            ts=time.time(), usage=bill.usage if bill else None, provider=bill.provider if bill else None,
            cost_usd=bill.cost_usd if bill else None, task=ask.task, fingerprint=self._fingerprint(ask),
            digest=image.digest,
        )
