"""The run guard: the one pure home of every run-level stop decision, with the clock passed in.

A per-image failure is a record; a fault that would fail every image alike stops the run once, with one line
that says what to do. The guard sees what the senders see and answers with a ``Stop`` value (never by
matching message text), so it is tested with plain exceptions and a fake clock::

    guard = RunGuard(url=cfg.url, has_token=token is not None, max_wait=cfg.max_wait, clock=time.monotonic)
    stop = guard.after_attempt(exc, path)  # every failed attempt: token, credits, wrong target, the same 5xx, stalled
    stop = guard.tick()                    # every second: nothing but failures for --max-wait
    guard.succeeded()                      # a 2xx arrived: held error records move to ``guard.ready``
    stop, rec = guard.before_record(exc, rec)  # an image about to get a final error: N identical refusals
    stop, rec = guard.before_ok(rec)           # a caption about to be written: N alike failing the quality gates
    stop = guard.at_end()                  # the run ran out of images: was every one refused alike?

and, for the run as a whole (``route`` and ``pipeline`` act on these verdicts, they decide nothing):
``lane_verdict(kind)`` (does a stop drain one of several targets, or end the run), ``every_target_spent``,
``first_stop(failures)`` (what a stopped run reports).

What stops the run:

* the token refused (401/403), the credits spent (402), a wrong URL or model (404/405/410, a redirect, a 4xx
  whose cause is not the image): at once;
* no connection at all (refused, DNS, TLS) ``CONNECT_FAILURES`` times before the target ever answered: the
  target is wrong, not down (once it has answered, the same failures are an outage: ``flow.circuit``);
* the same 5xx (status and message without volatile parts) for the first ``SERVER_ERROR_IMAGES`` images;
* the same refusal (or unreadable answer) for the first ``REFUSAL_LIMIT`` images, or for every image of a
  smaller folder;
* every caption of the first ``BAD_CAPTION_IMAGES`` images failing the quality gates the same way (all empty,
  all refusals): the model, the prompt or the route is wrong;
* nothing but failures (429s, an outage, a model that keeps loading) for ``--max-wait`` seconds.

A stop must not leave final records for the images it gave up on, or "run the same command again" would skip
them. So while no caption has arrived, a refusal (or a 5xx, or an unreadable answer) is *held* instead of
written, and so is a caption that failed the gates before any clean one: a stop drops them (the next run
retries those images); a caption (a clean one, for flagged captions) releases them into ``ready``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import anyio

from batchcap.aio import leaves
from batchcap.errors import (
    APIError,
    AuthError,
    BadResponse,
    CannotConnect,
    CreditsExhausted,
    JournalError,
    ModelLoading,
    QuotaExhausted,
    RateLimited,
    RejectedImage,
    RunAborted,
    ServerError,
    TransportError,
    WaitRequested,
    WrongTarget,
    abort_message,
)
from batchcap.flow.budget import Budget
from batchcap.models import Record
from batchcap.run.spend import money
from batchcap.types import Clock
from batchcap.words import plural

__all__ = [
    "BAD_CAPTION_IMAGES",
    "CONNECT_FAILURES",
    "DRAINING",
    "DRAIN_FIRST",
    "REFUSAL_LIMIT",
    "SERVER_ERROR_IMAGES",
    "RunGuard",
    "Stop",
    "StopKind",
    "budget_stop",
    "drains_first",
    "every_target_spent",
    "first_stop",
    "lane_verdict",
    "quota_message",
    "refusal_key",
    "unpriced_stop",
]

#: Identical refusals (same HTTP 4xx message) before any success that stop the run: a wrong model or
#: unsupported task fails every image alike, and 100k such requests help nobody.
REFUSAL_LIMIT = 25
#: Distinct images answered the same 5xx, before any caption, that stop the run (LiteLLM with its upstream
#: down answers 500 to everything; each image would spend all its attempts first).
SERVER_ERROR_IMAGES = 8
#: Images whose captions all failed the quality gates the same way, before any clean caption, that stop it.
BAD_CAPTION_IMAGES = 10
#: Connections that fail (refused, DNS, TLS) before the target ever answered that mean it is the wrong one.
CONNECT_FAILURES = 3

#: Why a run stopped on purpose. ``journal``: the results file cannot be written (locked, corrupt, disk full).
StopKind = Literal["auth", "credits", "wrong_target", "refusals", "server_errors", "bad_captions", "stalled",
                   "quota", "budget", "journal", "targets_spent", "other"]

#: Stops that give up on one target when there are several (its images go to the next) instead of the run.
DRAINING: frozenset[str] = frozenset(
    {"auth", "credits", "wrong_target", "stalled", "refusals", "server_errors", "bad_captions", "quota"}
)

#: Records held back at most (many *different* refusals are no systematic fault): memory stays bounded.
_HOLD_AT_MOST = 4 * REFUSAL_LIMIT
#: Distinct 5xx answers tracked before the first caption (more kinds than this are no systematic fault).
_KEYS_AT_MOST = 64

_VOLATILE = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),  # object addresses: <PIL.Image at 0x7f...>
    (re.compile(r"(['\"]).{24,}?\1"), "'…'"),  # quoted blobs: echoed request bodies, base64
    (re.compile(r"[A-Za-z0-9+/=]{40,}"), "…"),  # unquoted base64 runs
    (re.compile(r"\d+(\.\d+)?"), "#"),  # numbers: sizes, ids, times
)

_CONNECT_CAUSES = {
    "refused": "nothing is listening there (connection refused: is the server up, the port right?)",
    "dns": "the host name does not resolve (DNS: check its spelling)",
    "tls": "the TLS handshake failed (check http:// against https://, and the server's certificate)",
    "unreachable": "there is no route to it (network unreachable, or a firewall)",
}


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


Key = tuple[int | None, str]


class RunGuard:
    """What the senders have seen so far, and the verdict on each failure."""

    __slots__ = ("_bad", "_clock", "_connect_failures", "_held_keys", "_held_last", "_refusals", "_server_errors",
                 "answered", "clean_seen", "has_token", "held", "held_flagged", "host", "last_caption",
                 "last_failure", "limits", "max_wait", "ok_seen", "ready", "refusal_limit", "url")

    def __init__(
        self, *, url: str, has_token: bool, max_wait: float, refusal_limit: int = REFUSAL_LIMIT,
        server_error_images: int = SERVER_ERROR_IMAGES, bad_caption_images: int = BAD_CAPTION_IMAGES,
        connect_failures: int = CONNECT_FAILURES, clock: Clock = time.monotonic,
    ) -> None:
        self.url = url
        self.host = urlsplit(url).netloc
        self.has_token = has_token
        self.max_wait = max_wait
        self.refusal_limit = refusal_limit
        self.limits = (server_error_images, bad_caption_images, connect_failures)
        self._clock = clock
        self.last_caption = clock()  #: when the last 2xx arrived (the run's start until the first)
        self.last_failure: APIError | None = None  #: the latest failure since then (None: none)
        self.answered = False  #: the target has answered at least once (any HTTP status)
        self.ok_seen = False  #: ... with a 2xx
        self.clean_seen = False  #: ... with a caption that passed the quality gates
        self._connect_failures = 0
        self._refusals: Counter[Key] = Counter()  # identical refusals before any success
        self._server_errors: dict[Key, set[str]] = {}  # the images each 5xx answered, before any success
        self._bad: Counter[tuple[str, ...]] = Counter()  # quality flags of captions before any clean one
        self.held: list[Record] = []  #: final error records held back until a caption arrives (or the end)
        self._held_keys: Counter[Key] = Counter()
        self._held_last: APIError | None = None  # the error of the latest held record (for the stop line)
        self.held_flagged: list[Record] = []  #: flagged captions held back until a clean one (or the end)
        self.ready: list[Record] = []  #: held records released, for the senders to write

    # -- what each attempt says ------------------------------------------------------------------------------

    def succeeded(self) -> None:
        """A 2xx arrived: the target works. Held error records move to ``ready``."""
        self.ok_seen = self.answered = True
        self.last_caption = self._clock()
        self.last_failure = None
        if self.held:
            self.ready.extend(self.held)
            self.held = []
            self._held_keys.clear()

    def after_attempt(self, exc: APIError, path: str = "") -> Stop | None:
        """After any failed attempt of the image at ``path``: the stop, if this is one."""
        self.last_failure = exc
        if isinstance(exc, CreditsExhausted):
            return Stop("credits", f"the credits of this account ran out ({exc.message}); no image was given "
                                   "up on: run the same command when credits are back (or with another target)")
        if isinstance(exc, AuthError | WrongTarget):
            message = abort_message(
                exc, where=self.host, has_token=self.has_token, token_flag="--token-file",
                check=f"--model / --endpoint / --base-url ({self.url})",
            )
            return Stop("auth" if isinstance(exc, AuthError) else "wrong_target", message)
        if isinstance(exc, CannotConnect):
            if not self.answered:
                self._connect_failures += 1
                if self._connect_failures >= self.limits[2]:
                    return Stop("wrong_target", self._connect_message(exc))
        elif not isinstance(exc, TransportError):
            self.answered = True
        if isinstance(exc, QuotaExhausted) and exc.retry_after is not None and exc.retry_after > self.max_wait:
            return Stop("quota", quota_message(exc, self.host, self.max_wait))
        if isinstance(exc, ServerError) and not self.ok_seen and (stop := self._same_5xx(exc, path)):
            return stop
        return self.tick()

    def _connect_message(self, exc: CannotConnect) -> str:
        return (f"cannot connect to {exc.host or self.host}: {_CONNECT_CAUSES[exc.cause]}; nothing was captioned: "
                f"check --endpoint / --base-url / --api-base ({self.url})")

    def _same_5xx(self, exc: ServerError, path: str) -> Stop | None:
        key = refusal_key(exc)
        images = self._server_errors.get(key)
        if images is None:
            if len(self._server_errors) >= _KEYS_AT_MOST:
                return None
            images = self._server_errors[key] = set()
        images.add(path)
        if len(images) < self.limits[0]:
            return None
        return Stop("server_errors", f"the first {plural(len(images), 'image')} were all answered with the same server "
                                     f"error ({exc.message}); the service cannot caption now: check it (and "
                                     "--model / --endpoint), then run the same command again")

    def tick(self) -> Stop | None:
        """Every second, and after each failure: nothing but failures for ``max_wait`` seconds stops the run."""
        exc = self.last_failure
        if exc is None or self._clock() - self.last_caption <= self.max_wait:
            return None
        wait = f"{self.max_wait:g} s"
        if isinstance(exc, QuotaExhausted):
            what = f"has not served a caption for {wait} (GPU quota spent: {exc.message})"
        elif isinstance(exc, RateLimited):
            what = f"answered only 429 (rate limited) for {wait} ({exc.message}); lower --rate or wait"
        elif isinstance(exc, WaitRequested):
            what = f"has not served a caption for {wait} (it asked to wait: {exc.message})"
        elif isinstance(exc, ModelLoading):
            what = f"has not served a caption for {wait} (still loading or waking up: {exc.message})"
        elif isinstance(exc, TransportError) or exc.status in (502, 503, 504):
            what = f"has been unreachable for {wait} ({exc.message})"
        else:
            what = f"has not served a caption for {wait} (last answer: {exc.message})"
        return Stop("stalled", f"{self.host} {what}; no image was given up on: run the same command later to "
                               "resume")

    def slept(self, seconds: float) -> None:
        """The process slept (``flow.suspend``): that time does not count toward ``max_wait``."""
        self.last_caption += seconds

    # -- what each image ends with ---------------------------------------------------------------------------

    def before_record(self, exc: APIError, record: Record) -> tuple[Stop | None, Record | None]:
        """Before an image gets a final error: the stop, if any, and the record to write now (None: held).

        The same refusal (or unreadable answer) for the first ``refusal_limit`` images, with no success at
        all, means the target or the flags are wrong, not the images: the run stops and the held images get
        no record. A 5xx before any success is held too (``after_attempt`` counts those).
        """
        if not isinstance(exc, RejectedImage | BadResponse | ServerError) or self.ok_seen:
            return None, record
        key = refusal_key(exc)
        if isinstance(exc, ServerError):
            return None, self._hold(key, record, exc)
        self._refusals[key] += 1
        if self._refusals[key] < self.refusal_limit:
            return None, self._hold(key, record, exc)
        self.held.clear()
        self._held_keys.clear()
        return self._refused(exc, self.refusal_limit), None

    def _hold(self, key: Key, record: Record, exc: APIError) -> Record | None:
        if len(self.held) >= _HOLD_AT_MOST:  # many different answers: not one systematic fault
            return record
        self.held.append(record)
        self._held_keys[key] += 1
        self._held_last = exc
        return None

    @staticmethod
    def _refused(exc: APIError, n: int) -> Stop:
        if isinstance(exc, ServerError):
            return Stop("server_errors", f"every one of {plural(n, 'image')} was answered with the same server error "
                                         f"({exc.message}); check the service (and --model / --endpoint), then "
                                         "run the same command again")
        what = "refused with the same answer" if isinstance(exc, RejectedImage) else \
            "answered with the same unreadable body"
        first = f"the first {plural(n, 'image')} were all" if n >= REFUSAL_LIMIT else f"all {plural(n, 'image')} were"
        return Stop("refusals", f"{first} {what} ({exc.message}); check --model / --api and the service, then "
                                "run the same command again")

    def before_ok(self, record: Record) -> tuple[Stop | None, Record | None]:
        """Before a caption is written: the stop, if any, and the record to write now (None: held).

        Until one caption passes the quality gates, flagged ones are held; ``BAD_CAPTION_IMAGES`` of them
        failing the gates the same way (all empty, all refusals) stop the run. The first clean caption moves
        them to ``ready``.
        """
        if self.clean_seen:
            return None, record
        if not record.flags:
            self.clean_seen = True
            if self.held_flagged:
                self.ready.extend(self.held_flagged)
                self.held_flagged = []
            return None, record
        self._bad[record.flags] += 1
        if self._bad[record.flags] >= self.limits[1]:
            self.held_flagged = []
            return self._bad_captions(record.flags, self.limits[1]), None
        if len(self.held_flagged) >= _HOLD_AT_MOST:
            return None, record
        self.held_flagged.append(record)
        return None, None

    @staticmethod
    def _bad_captions(flags: tuple[str, ...], n: int) -> Stop:
        return Stop("bad_captions", f"the captions of the first {plural(n, 'image')} all failed the quality gates the "
                                    f"same way ({', '.join(flags)}), after their quality retries: the model, "
                                    "the prompt or the route is wrong; check --model / --prompt / --api, then "
                                    "run the same command again")

    def at_end(self) -> Stop | None:
        """The run ran out of images without a stop: if every image was refused alike (a folder smaller than
        the limits), that is the same systematic fault; else the held records are real and move to ``ready``."""
        if not self.ok_seen and len(self.held) >= 2 and len(self._held_keys) == 1 and self._held_last is not None:
            paths = {record.path for record in self.held}
            if len(paths) >= 2:
                return self._refused(self._held_last, len(paths))
        if not self.clean_seen and len(self.held_flagged) >= 2 and len(self._bad) == 1:
            return self._bad_captions(self.held_flagged[0].flags, len(self.held_flagged))
        self.ready.extend(self.held)
        self.ready.extend(self.held_flagged)
        self.held, self.held_flagged = [], []
        self._held_keys.clear()
        return None

    def release(self) -> list[Record]:
        """Hand over every record that may be written now (``at_end`` first, when the run was not stopped)."""
        ready, self.ready = self.ready, []
        return ready

    def __repr__(self) -> str:
        return (f"<RunGuard {self.host} answered={self.answered} ok_seen={self.ok_seen} "
                f"refusals={sum(self._refusals.values())}/{self.refusal_limit} held={len(self.held)}"
                f"+{len(self.held_flagged)}>")


# -- the run as a whole: several targets, and what a stopped run reports ----------------------------------------


#: Run-level stops that let the requests in flight finish and be written before the run ends: the budget
#: refuses only what has not started, so what is in flight is paid for and kept. The others end at once.
DRAIN_FIRST: frozenset[str] = frozenset({"budget"})


def drains_first(kind: str) -> bool:
    """Whether a stop of this kind lets the requests in flight finish (and be written) before the run ends."""
    return kind in DRAIN_FIRST


def lane_verdict(kind: str) -> Literal["drain", "stop"]:
    """With several targets, a stop of one: ``drain`` it (its images go to the others) or ``stop`` the run."""
    return "drain" if kind in DRAINING else "stop"


def every_target_spent(drained: Sequence[tuple[str, str, str]]) -> Stop:
    """Every target was drained (``(name, why, kind)`` each): the run stops, with the kind they share."""
    reasons = "; ".join(f"{name}: {why}" for name, why, _ in drained)
    kinds = {kind for _, _, kind in drained}
    kind = kinds.pop() if len(kinds) == 1 else "targets_spent"
    return Stop(kind if kind in DRAINING else "targets_spent", f"every target is spent ({reasons})")  # type: ignore[arg-type]


def first_stop(failures: Sequence[BaseException]) -> Stop | None:
    """What stopped the producers: the first run-level stop or journal fault, as a ``Stop``. Cancellations
    are the stop's echo; anything else is a bug, not a user error, and is raised."""
    for exc in failures:
        found = leaves(exc)
        for leaf in found:
            if isinstance(leaf, RunAborted):
                return Stop(leaf.kind if leaf.kind in _KINDS else "other", str(leaf))  # type: ignore[arg-type]
            if isinstance(leaf, JournalError):
                return Stop("journal", str(leaf))
        for leaf in found:
            if not isinstance(leaf, anyio.get_cancelled_exc_class() | anyio.BrokenResourceError):
                raise leaf
    return None


_KINDS = frozenset(StopKind.__args__)  # type: ignore[attr-defined]
