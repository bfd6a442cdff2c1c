"""The run guard: the one pure rule for "should the whole run stop?", with the clock passed in.

A per-image failure is a record; a fault that would fail every image alike stops the run once, with one line
that says what to do. The guard sees what the senders see and answers with a ``Stop`` value (never by
matching message text), so it is tested with plain exceptions and a fake clock::

    guard = RunGuard(url=cfg.url, has_token=token is not None, max_wait=cfg.max_wait, clock=time.monotonic)
    stop = guard.after_attempt(exc)        # every failed attempt: token refused, wrong target, stalled
    stop = guard.before_record(exc)        # an image about to get a final error: N identical refusals
    guard.succeeded()                      # a caption arrived

``RetryPolicy.decide`` only says what to do with *one image* (retry or record); every run-level stop is here.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from batchcap.errors import APIError, AuthError, ModelLoading, RejectedImage, WrongTarget, abort_message
from batchcap.types import Clock

__all__ = ["REFUSAL_LIMIT", "RunGuard", "Stop", "StopKind"]

#: Identical refusals (same HTTP 4xx message) before any success that stop the run: a wrong model or
#: unsupported task fails every image alike, and 100k such requests help nobody.
REFUSAL_LIMIT = 25

#: Why a run stopped on purpose. ``journal``: the results file cannot be written (locked, corrupt, disk full).
StopKind = Literal["auth", "wrong_target", "refusals", "stalled", "journal"]


@dataclass(frozen=True, slots=True)
class Stop:
    """A run-level stop: its cause as a value, and the one line shown to the user."""

    kind: StopKind
    message: str


class RunGuard:
    """What the senders have seen so far, and the verdict on each failure."""

    __slots__ = ("_clock", "_refusals", "has_token", "host", "last_caption", "max_wait", "ok_seen",
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
        self._refusals: Counter[str] = Counter()  # identical refusals seen before any success

    def succeeded(self) -> None:
        self.ok_seen = True
        self.last_caption = self._clock()

    def after_attempt(self, exc: APIError) -> Stop | None:
        """After any failed attempt: a refused token or a wrong target stops at once; so does a service that
        has kept "loading" for ``max_wait`` seconds without a single caption."""
        if isinstance(exc, AuthError | WrongTarget):
            message = abort_message(
                exc, where=self.host, has_token=self.has_token, token_flag="--token-file",
                check=f"--model / --endpoint / --base-url ({self.url})",
            )
            return Stop("auth" if isinstance(exc, AuthError) else "wrong_target", message)
        if isinstance(exc, ModelLoading) and self._clock() - self.last_caption > self.max_wait:
            return Stop("stalled", f"{self.host} has not served a caption for {self.max_wait:g} s (still loading "
                                   f"or waking up: {exc.message}); run the same command later to resume")
        return None

    def before_record(self, exc: APIError) -> Stop | None:
        """Before an image gets a final error: the same refusal for the first ``refusal_limit`` images, with no
        success at all, means the target or the flags are wrong, not the images."""
        if not isinstance(exc, RejectedImage) or self.ok_seen:
            return None
        self._refusals[exc.message] += 1
        if self._refusals[exc.message] < self.refusal_limit:
            return None
        return Stop("refusals", f"the first {self.refusal_limit} images were all refused with the same answer "
                                f"({exc.message}); check --model / --api and the service, then run again")

    def __repr__(self) -> str:
        return (f"<RunGuard {self.host} ok_seen={self.ok_seen} refusals={sum(self._refusals.values())}/"
                f"{self.refusal_limit}>")
