"""What to do with one image after a failed attempt: retry it (and after how long), or record a failure.

Pure and decided by exception class, never by message text (see ``errors.py``). The policy is a value passed
in, not a global: ``RetryPolicy.immediate()`` is the test mode, in the spirit of ``stamina.set_testing``::

    decision = policy.decide(exc, retries_used=used, waited=waited, rand=random.random)
    if decision.action == "retry":
        used += decision.spends_retry
        waited += 0.0 if decision.spends_retry else decision.delay
        await sleep(decision.delay)

Whether the *whole run* must stop (a refused token, a wrong target, ...) is not decided here: that is
``batchcap.run.guard``'s one job, so the two never disagree.

Three kinds of retry. A fault (5xx, timeout, reset, a 2xx with a cut or garbled body) spends one of
``retries`` and backs off exponentially with full jitter. A wait the service asked for (model loading 503,
429) does not spend a retry, so a cold model or a busy hour does not turn into a failed image; those waits
are bounded per image by ``wait_budget`` instead. A full queue (a Space's 503) is back-pressure: waited out
without spending a retry or the budget, bounded by the guard's stall rule (no caption for ``--max-wait``).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from batchcap.errors import (
    BadResponse,
    InputError,
    ModelLoading,
    PermanentError,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    ServerError,
    TransportError,
)
from batchcap.words import plural

__all__ = ["Action", "Decision", "ImageRetries", "RetryPolicy", "header", "parse_ratelimit", "parse_retry_after",
           "retry_hint"]

Action = Literal["retry", "fail"]

#: Shortest wait that does not spend a retry: a 503 with ``estimated_time: 0`` (or a jitter draw near zero)
#: must not become a hot loop of requests that the budget cannot even count.
MIN_WAIT = 0.5


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one failed attempt. ``delay`` is seconds to sleep before the next attempt."""

    action: Action
    delay: float
    spends_retry: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How persistent to be with one image. All times are seconds."""

    retries: int = 5  #: extra attempts for faults (5xx, timeouts); waits the server asked for do not count
    base: float = 0.5  #: first backoff ceiling; it doubles per attempt
    cap: float = 30.0  #: longest single backoff
    wait_cap: float = 120.0  #: longest single wait honoured from a server hint (Retry-After, estimated_time)
    wait_budget: float = 1800.0  #: total waits per image that do not spend a retry; beyond it they do

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0 (got {self.retries!r}); 0 means one attempt only")
        for name in ("base", "cap", "wait_cap", "wait_budget"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0 (got {value!r})")

    @classmethod
    def immediate(cls, attempts: int = 2) -> RetryPolicy:
        """No delays and ``attempts`` attempts in all, every retry spent: for tests that must not wait."""
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1 (got {attempts!r})")
        return cls(retries=attempts - 1, base=0.0, cap=0.0, wait_cap=0.0, wait_budget=0.0)

    def backoff(self, attempt: int, rand: Callable[[], float]) -> float:
        """Full jitter, ``rand() * min(cap, base * 2 ** (attempt - 1))``; a huge ``attempt`` gives ``cap``."""
        try:
            ceiling = self.base * 2.0 ** max(attempt - 1, 0)
        except OverflowError:
            ceiling = math.inf if self.base > 0 else 0.0
        return rand() * min(self.cap, ceiling)

    def decide(
        self, exc: BaseException, *, retries_used: int, waited: float, rand: Callable[[], float]
    ) -> Decision:
        """Classify ``exc`` after a failed attempt.

        ``retries_used`` counts earlier decisions that spent a retry; ``waited`` sums the delays of those
        that did not. A wait is free while it is longer than zero and ``waited + delay <= wait_budget``: a
        zero wait (``immediate()``) always spends a retry, so a loop of them still ends.
        """
        name = type(exc).__name__
        if isinstance(exc, BadResponse):  # a 2xx whose body was cut or garbled: usually a proxy's hiccup
            return self._spend(exc, retries_used, self.backoff(retries_used + 1, rand), "backoff")
        if isinstance(exc, PermanentError | InputError):
            return Decision("fail", 0.0, False, f"{name}: retrying the same request cannot help")
        if isinstance(exc, QueueFull):  # back-pressure: never final, never a retry; the guard bounds it in time
            hint = exc.retry_after
            if hint is not None and math.isfinite(hint) and hint > 0:
                delay = hint
            else:
                delay = self.backoff(self._wait_attempt(retries_used, waited), rand)
            delay = min(max(delay, MIN_WAIT), self.wait_cap)
            if delay <= 0:  # immediate(): a zero wait still counts, so a loop of them ends
                return self._spend(exc, retries_used, 0.0, "no waits in this policy")
            return Decision("retry", delay, False, f"{name}: the queue is full; waiting {delay:.1f}s (back-pressure)")
        if isinstance(exc, ModelLoading | RateLimited):
            if isinstance(exc, ModelLoading):
                hint, what = exc.estimated_time, "estimated_time"
            else:
                hint, what = exc.retry_after, "Retry-After"
            if hint is not None and math.isfinite(hint) and hint > 0:
                delay, source = hint, what
            else:
                delay, source = self.backoff(self._wait_attempt(retries_used, waited), rand), "backoff"
            delay = min(max(delay, MIN_WAIT), self.longest_wait(exc))
            if delay > 0 and waited + delay <= self.wait_budget:
                return Decision(
                    "retry",
                    delay,
                    False,
                    f"{name}: waiting {delay:.1f}s ({source}); {waited + delay:.0f}s of the "
                    f"{self.wait_budget:.0f}s wait budget used",
                )
            return self._spend(exc, retries_used, delay, "wait budget spent, counting a retry")
        if isinstance(exc, ServerError | TransportError):
            return self._spend(exc, retries_used, self.backoff(retries_used + 1, rand), "backoff")
        return Decision("fail", 0.0, False, f"{name}: not a known transient error, so not retried")

    def longest_wait(self, exc: BaseException) -> float:
        """The longest single wait honoured from ``exc``'s hint: ``wait_cap``, but a spent GPU quota is waited
        out whole (up to ``wait_budget``: the guard stops the run for a longer one), since asking before it
        comes back only earns the same answer."""
        return self.wait_budget if isinstance(exc, QuotaExhausted) else self.wait_cap

    def _spend(self, exc: BaseException, retries_used: int, delay: float, why: str) -> Decision:
        name = type(exc).__name__
        if retries_used >= self.retries:
            return Decision("fail", 0.0, False, f"{name}: gave up after {plural(retries_used, 'retry')}")
        return Decision(
            "retry",
            delay,
            True,
            f"{name}: retry {retries_used + 1} of {self.retries} in {delay:.1f}s ({why})",
        )

    def _wait_attempt(self, retries_used: int, waited: float) -> int:
        """An attempt number for free waits, which do not advance ``retries_used``: it grows with the time
        already waited (about one doubling per doubling of ``waited``), so a hint-less 429 or 503 streak
        backs off exponentially instead of polling every ``base`` seconds."""
        if self.base <= 0 or waited <= 0:
            return retries_used + 1
        return retries_used + 1 + int(math.log2(1.0 + waited / self.base))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    A date is measured against ``now`` (Unix time, default ``time.time()``); past dates and negative numbers
    give 0.0. Anything unreadable gives None, so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone information
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_ratelimit(value: str | None) -> float | None:
    """Seconds until the quota window resets, from an IETF ``RateLimit`` header, when no request is left.

    ``"api";r=0;t=55`` gives 55.0; ``r`` above zero gives None (requests remain, nothing to wait for). Also
    reads the older dictionary form ``limit=100, remaining=0, reset=55`` and, for several policies, returns
    the longest reset among the exhausted ones.
    """
    if not value:
        return None
    items = [_params(item) for item in value.split(",")]
    if all(len(params) <= 1 for params in items):  # the dictionary form: one key per comma-separated member
        items = [{key: val for params in items for key, val in params.items()}]
    waits = [wait for params in items if (wait := _exhausted_wait(params)) is not None]
    return max(waits) if waits else None


def _params(item: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in item.split(";"):
        key, sep, val = part.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return params


def _exhausted_wait(params: Mapping[str, str]) -> float | None:
    remaining = _number(params.get("r", params.get("remaining")))
    reset = _number(params.get("t", params.get("reset")))
    if remaining is None or reset is None or remaining > 0:
        return None
    return max(0.0, reset)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def retry_hint(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint in seconds: ``Retry-After`` first, else ``RateLimit``; names in any case."""
    hint = parse_retry_after(header(headers, "Retry-After"))
    return hint if hint is not None else parse_ratelimit(header(headers, "RateLimit"))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` case-insensitively, for plain dicts too (aiohttp's own mapping already is)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


class ImageRetries:
    """What one image's (one task's) failures have cost so far: retries spent, free waits, and the retries spent in the
    current spell of unreachable failures (given back if the circuit calls it an outage)."""

    __slots__ = ("in_spell", "retries", "spell", "waited")

    def __init__(self) -> None:
        self.retries = 0
        self.waited = 0.0
        self.spell = -1
        self.in_spell = 0

    def spend(self, spell: int | None) -> None:
        """One retry spent; ``spell``: the circuit's spell number, when the failure could be an outage's."""
        self.retries += 1
        if spell is not None:
            if spell != self.spell:
                self.spell, self.in_spell = spell, 0
            self.in_spell += 1

    def refund(self, spell: int) -> None:
        """The circuit opened on ``spell``: the retries this image spent in it are given back."""
        if spell == self.spell:
            self.retries -= self.in_spell
        self.in_spell = 0
