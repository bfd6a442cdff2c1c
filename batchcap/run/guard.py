"""The run guard: the one pure rule for "should the whole run stop?", with the clock passed in.

A per-image failure is a record; a fault that would fail every image alike stops the run once, with one line
that says what to do. The guard sees what the senders see and answers with a ``Stop`` value (never by
matching message text), so it is tested with plain exceptions and a fake clock::

    guard = RunGuard(url=cfg.url, has_token=token is not None, max_wait=cfg.max_wait, clock=time.monotonic)
    stop = guard.after_attempt(exc)        # every failed attempt: token refused, credits spent, wrong target, stalled
    stop = guard.before_record(exc, rec)   # an image about to get a final error: N identical refusals
    released = guard.succeeded()           # a caption arrived: the records held back so far, to write now

``RetryPolicy.decide`` only says what to do with *one image* (retry or record); every run-level stop is here.

A stop must not leave final error records for the images it gave up on, or "run the same command again"
would skip them. So while no caption has arrived, a refusal (or an unreadable answer) is *held* instead of
written: if the same answer comes back ``refusal_limit`` times the run stops and the held images are simply
not recorded (the next run retries them); if a caption arrives, or the run ends without a stop, the held
records are released to the journal. Identical means the same status and the same message once its
volatile parts are removed (object addresses, numbers, echoed bodies: see ``refusal_key``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from batchcap.errors import (
    APIError,
    AuthError,
    BadResponse,
    CreditsExhausted,
    ModelLoading,
    QueueFull,
    QuotaExhausted,
    RejectedImage,
    WrongTarget,
    abort_message,
)
from batchcap.flow.budget import Budget
from batchcap.models import Record
from batchcap.run.spend import money
from batchcap.types import Clock
from batchcap.words import plural

__all__ = ["REFUSAL_LIMIT", "RunGuard", "Stop", "StopKind", "budget_stop", "quota_message", "refusal_key",
           "unpriced_stop"]

#: Identical refusals (same HTTP 4xx message) before any success that stop the run: a wrong model or
#: unsupported task fails every image alike, and 100k such requests help nobody.
REFUSAL_LIMIT = 25

#: Why a run stopped on purpose. ``journal``: the results file cannot be written (locked, corrupt, disk full).
StopKind = Literal["auth", "credits", "wrong_target", "refusals", "stalled", "journal", "targets_spent", "quota",
                   "budget"]

_NONE: list[Record] = []  # returned (never changed) by succeeded() when nothing is held: no list per caption

#: Records held back at most (many *different* refusals are no systematic fault): memory stays bounded.
_HOLD_AT_MOST = 4 * REFUSAL_LIMIT

_VOLATILE = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),  # object addresses: <PIL.Image at 0x7f...>
    (re.compile(r"(['\"]).{24,}?\1"), "'…'"),  # quoted blobs: echoed request bodies, base64
    (re.compile(r"[A-Za-z0-9+/=]{40,}"), "…"),  # unquoted base64 runs
    (re.compile(r"\d+(\.\d+)?"), "#"),  # numbers: sizes, ids, times
)


def refusal_key(exc: APIError) -> tuple[int | None, str]:
    """What makes two refusals "the same": the status and the message without its volatile parts."""
    text = exc.message
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return exc.status, " ".join(text.split())[:200]


def quota_message(exc: QuotaExhausted, host: str, max_wait: float) -> str:
    """The stop line for a GPU quota that comes back after ``--max-wait``: when, and that resuming is safe."""
    from batchcap.service.space.words import format_wait

    wait = exc.retry_after or 0.0
    at = "" if exc.resets_at is None else time.strftime(" (at %H:%M local time)", time.localtime(exc.resets_at))
    return (f"the GPU quota at {host} is spent and comes back in {format_wait(wait)}{at}, later than --max-wait "
            f"{max_wait:g} s; no image was given up on: run the same command then to resume ({exc.message})")


@dataclass(frozen=True, slots=True)
class Stop:
    """A run-level stop: its cause as a value, and the one line shown to the user."""

    kind: StopKind
    message: str


def budget_stop(budget: Budget) -> Stop:
    """``--max-cost`` / ``--max-images`` reached (``flow.budget``): the line the run ends with, once drained.

    ``spent`` and the images count the whole job (earlier runs of the same journal included), as the cap does.
    """
    images = f"{budget.spent_images:,} image{'s' if budget.spent_images != 1 else ''}"
    if budget.refused_for == "images" and budget.max_images is not None:
        return Stop("budget", f"image limit reached: {images} of --max-images {budget.max_images:,} done (spent "
                              f"{money(budget.spent)}); run again with a higher --max-images to continue")
    cap = money(budget.max_cost) if budget.max_cost is not None else "no cap"
    return Stop("budget", f"budget reached: spent {money(budget.spent)} of {cap} ({images}); run again with a "
                          "higher --max-cost to continue")


def unpriced_stop(target: str, notes: list[str]) -> Stop:
    """An answer under ``--max-cost`` whose cost is not known: the cap cannot be kept, so nothing more starts."""
    why = notes[-1] if notes else f"{target}: an answer's cost is not known"
    return Stop("budget", f"{why}; --max-cost cannot be kept without it: pass --token-price IN,OUT and run the "
                          "same command again")


class RunGuard:
    """What the senders have seen so far, and the verdict on each failure."""

    __slots__ = ("_clock", "_refusals", "has_token", "held", "host", "last_caption", "max_wait", "ok_seen",
                 "refusal_limit", "url")

    def __init__(
        self, *, url: str, has_token: bool, max_wait: float, refusal_limit: int = REFUSAL_LIMIT,
        clock: Clock = time.monotonic,
    ) -> None:
        self.url = url
        self.host = urlsplit(url).netloc
        self.has_token = has_token
        self.max_wait = max_wait
        self.refusal_limit = refusal_limit
        self._clock = clock
        self.last_caption = clock()  #: when the last caption arrived (the run's start until the first)
        self.ok_seen = False
        self._refusals: Counter[tuple[int | None, str]] = Counter()  # identical refusals before any success
        self.held: list[Record] = []  #: final error records held back until a caption arrives (or the end)

    def succeeded(self) -> list[Record]:
        """A caption arrived; returns the held records, which are now safe to write."""
        self.ok_seen = True
        self.last_caption = self._clock()
        return self.release() if self.held else _NONE

    def release(self) -> list[Record]:
        """Hand over the held records (on success, or when the run ends without a stop)."""
        held, self.held = self.held, []
        return held

    def after_attempt(self, exc: APIError) -> Stop | None:
        """After any failed attempt: a refused token or a wrong target stops at once; so does a GPU quota that
        comes back later than ``max_wait``, and a service that has kept "loading" (or its queue full, or its
        quota spent) for ``max_wait`` seconds without a single caption."""
        if isinstance(exc, CreditsExhausted):
            return Stop("credits", f"the credits of this account ran out ({exc.message}); no image was given "
                                   "up on: run the same command when credits are back (or with another target)")
        if isinstance(exc, AuthError | WrongTarget):
            message = abort_message(
                exc, where=self.host, has_token=self.has_token, token_flag="--token-file",
                check=f"--model / --endpoint / --base-url ({self.url})",
            )
            return Stop("auth" if isinstance(exc, AuthError) else "wrong_target", message)
        if isinstance(exc, QuotaExhausted) and exc.retry_after is not None and exc.retry_after > self.max_wait:
            return Stop("quota", quota_message(exc, self.host, self.max_wait))
        if isinstance(exc, ModelLoading | QueueFull | QuotaExhausted) and (
            self._clock() - self.last_caption > self.max_wait
        ):
            return Stop("stalled", f"{self.host} has not served a caption for {self.max_wait:g} s (still loading "
                                   f"or waking up: {exc.message}); run the same command later to resume")
        return None

    def before_record(self, exc: APIError, record: Record) -> tuple[Stop | None, Record | None]:
        """Before an image gets a final error: the stop, if any, and the record to write now (None: held).

        The same refusal (or unreadable answer) for the first ``refusal_limit`` images, with no success at
        all, means the target or the flags are wrong, not the images: the run stops and the held images get
        no record.
        """
        if not isinstance(exc, RejectedImage | BadResponse) or self.ok_seen:
            return None, record
        key = refusal_key(exc)
        self._refusals[key] += 1
        if self._refusals[key] < self.refusal_limit:
            if len(self.held) >= _HOLD_AT_MOST:  # many different answers: not one systematic fault
                return None, record
            self.held.append(record)
            return None, None
        self.held.clear()
        what = "refused with the same answer" if isinstance(exc, RejectedImage) else "answered with the same unreadable body"
        return Stop("refusals", f"the first {plural(self.refusal_limit, 'image')} were all {what} ({exc.message}); "
                                "check --model / --api and the service, then run the same command again"), None

    def __repr__(self) -> str:
        return (f"<RunGuard {self.host} ok_seen={self.ok_seen} refusals={sum(self._refusals.values())}/"
                f"{self.refusal_limit}>")
