"""The one exception tree of batchcap.

Decisions (retry, record, abort) are made by class, never by parsing message text::

    BatchcapError
    ├── ConfigError            the command line, a profile or a path is wrong; nothing was sent -> exit 2
    │   └── UsageError         a malformed flag or argument (kept for its name: also exit 2)
    ├── InputError             unreadable / empty / truncated / not an image -> error record, never retried
    │   ├── PromptError        a task's prompt template failed for one image -> error record for that task
    │   └── SourceProblem      a dataset's file or row that cannot be read (damaged tar or parquet, a row
    │                          without an image); also an OSError, as the sources report what they skip
    ├── JournalError           journal locked, corrupt, or the disk is full  -> abort, exit 3
    ├── NotifyFailed           the --notify webhook did not take the message -> one warning line, never a failure
    ├── BudgetReached(cap)     the next request could cross --max-cost / --max-images: stop starting,
    │                          drain, then RunAborted(kind="budget") -> exit 3
    ├── Aborted                a command started and stopped on purpose      -> exit 3
    │   ├── RunAborted(stop)   run.guard's verdict, a journal or disk fault   (resume: run the same command)
    │   ├── JobAborted         a Ray job's shard stopped the job (the same causes as RunAborted)
    │   └── BenchAborted       a bench target refused the token or does not exist
    └── APIError(status, request_id)
        ├── TransientError     retried with backoff
        │   ├── WaitRequested(retry_after) the service asked for a wait; waits do not spend retries
        │   │   ├── RateLimited            429 -> the whole pool backs off (a spell of them: one probe at a time)
        │   │   │   └── QuotaExhausted     a Space's GPU quota is spent: the pool waits until it comes back;
        │   │   │                          longer than --max-wait stops the run (resumable)
        │   │   ├── QueueFull              a Space's queue is full (503): back-pressure, never an image's
        │   │   │                          final error and never one of its retries
        │   │   └── ModelLoading(estimated_time) 503 while the model (or endpoint) wakes
        │   ├── ServerError                5xx
        │   ├── BadResponse                2xx with a body we cannot read (a proxy's hiccup): retried, then an
        │   │                              error record retried on the next run; the same one for many images
        │   │                              stops the run
        │   └── TransportError             reset, refused, broken stream (a spell of them opens the circuit)
        │       ├── CannotConnect(cause)   refused / DNS / TLS: before any answer, the target is wrong (abort)
        │       └── RequestTimeout         no answer within --timeout
        └── PermanentError     not retried
            ├── AuthError                  401/403 -> abort the run at once
            ├── CreditsExhausted           402: the account's credits ran out -> abort the run at once
            ├── WrongTarget                404/405/410, redirects: the URL or model is wrong -> abort the run
            ├── RejectedImage              400/413/415/422 -> error record
            └── BadCaption(flags)          2xx caption that failed the quality gates after its retries
                                           (--on-bad-caption error) -> error record
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from batchcap.models import Quota

__all__ = [
    "APIError",
    "Aborted",
    "AuthError",
    "BadCaption",
    "BadResponse",
    "BatchcapError",
    "BenchAborted",
    "BudgetReached",
    "CannotConnect",
    "ConfigError",
    "ConnectCause",
    "CreditsExhausted",
    "InputError",
    "JobAborted",
    "JournalError",
    "ModelLoading",
    "NotifyFailed",
    "PermanentError",
    "PromptError",
    "QueueFull",
    "QuotaExhausted",
    "RateLimited",
    "RejectedImage",
    "RequestTimeout",
    "RunAborted",
    "ServerError",
    "SourceProblem",
    "TransientError",
    "TransportError",
    "UsageError",
    "WaitRequested",
    "WrongTarget",
    "abort_message",
    "as_value",
]

_E = TypeVar("_E", bound=BaseException)


def as_value(exc: _E) -> _E:
    """``exc`` without its traceback, to be kept as a result (an image's error record to come).

    A kept exception's traceback holds the frames it passed through: the reader's, with the file's bytes, and the
    frame that caught it, whose result list holds the exception again. That cycle kept a whole read batch (64
    files' bytes) alive until a full collection: a folder with broken photos grew the run's memory with its size.
    """
    return exc.with_traceback(None)


class BatchcapError(Exception):
    """Base of every error batchcap raises on purpose."""


class ConfigError(BatchcapError):
    """The command line, a profile or a path is wrong (nothing was sent); the message names the setting and the fix."""


class UsageError(ConfigError):
    """A flag is malformed or flags do not fit together (exit 2, as every ConfigError)."""


class InputError(BatchcapError):
    """One input file cannot be sent (unreadable, empty, truncated, not an image, too large)."""


class PromptError(InputError):
    """A task's prompt template could not be rendered for one image (a filter failed on its values)."""


class SourceProblem(InputError, OSError):
    """Part of a dataset source that cannot be read; its message is the error record's reason as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EIO, reason)


class JournalError(BatchcapError):
    """The results journal cannot be used: locked by another run, corrupt mid-file, or the disk is full."""


class BudgetReached(BatchcapError):
    """No further request may start: it could cross ``--max-cost`` (``cap == "cost"``) or ``--max-images``.

    Raised by ``flow.budget.BudgetGate`` before anything is sent; the run lets what is in flight finish,
    writes it, and stops with ``RunAborted(kind="budget")`` (``run.guard.budget_stop`` words the line).
    """

    def __init__(self, cap: str) -> None:
        super().__init__(f"the {'--max-cost' if cap == 'cost' else '--max-images'} budget is reached")
        self.cap = cap


class NotifyFailed(BatchcapError):
    """The ``--notify`` webhook could not be reached or refused the message; the run itself is unaffected."""


class Aborted(BatchcapError):
    """A whole command stopped on purpose; the message says why, ``advice`` (if set) what to do next."""

    advice: str | None = None


class RunAborted(Aborted):
    """The run stopped on purpose: ``kind`` names the cause as a value (see ``batchcap.run.guard.StopKind``)."""

    def __init__(self, message: str, *, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


class JobAborted(Aborted):
    """A shard of a Ray job stopped the job on purpose (bad token, wrong URL, journal fault); the message says why."""


class BenchAborted(Aborted):
    """A bench target refused the token or does not exist: every request would fail the same way."""


class APIError(BatchcapError):
    """The service, or the way to it, failed one request."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        #: what the answer's rate-limit headers said (``flow.window``), set by the client when it had any
        self.quota: Quota | None = None


class TransientError(APIError):
    """Worth another attempt after a pause."""


class WaitRequested(TransientError):
    """The service asked for a wait: ``retry_after`` is its hint in seconds, when it gave one.

    Waits do not spend an image's retries (``flow.retry``); a spell of them pauses the whole pool and sends one
    probe at a time (``flow.circuit``); no caption for ``--max-wait`` stops the run (``run.guard``). A new kind
    of wait (a Space's "queue full", a GPU quota) is a subclass, handled alike without another branch.
    """

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.retry_after = retry_after


class RateLimited(WaitRequested):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, retry_after=retry_after)


class QuotaExhausted(RateLimited):
    """A Space's GPU quota (ZeroGPU) is spent. ``retry_after``: seconds until it comes back, when the Space said.

    A rate limit per user per day rather than per second: the whole pool waits it out (up to ``--max-wait``;
    beyond it the run stops and says when to resume), and it does not speak of the Space's capacity.
    ``resets_at`` is that moment as Unix time, for the message that tells when to resume.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        resets_at: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, retry_after=retry_after)
        self.resets_at = resets_at


class QueueFull(WaitRequested):
    """A Space's queue is full (Gradio's 503 "Queue is full", ZeroGPU's "No GPU was available"): wait and retry.

    Back-pressure, not a fault: it never spends one of the image's retries and never becomes its final error;
    a Space that stays full for ``--max-wait`` without a caption stops the run (resumable), as a loading model does.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 503,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, retry_after=retry_after)


class ModelLoading(WaitRequested):
    """HTTP 503 (or 502) while a model loads or an endpoint scales up from zero."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 503,
        request_id: str | None = None,
        estimated_time: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, retry_after=estimated_time)

    @property
    def estimated_time(self) -> float | None:
        """The server's ``estimated_time`` (seconds until the model is loaded), the hint of this wait."""
        return self.retry_after


class ServerError(TransientError):
    """HTTP 5xx (and 408) that is not a cold start."""


class TransportError(TransientError):
    """No HTTP answer: timeout, refused or reset connection, broken stream."""


#: Why a connection could not be made: nothing listening, a name that does not resolve, a TLS handshake that
#: failed, or anything else on the way (no route, a firewall).
ConnectCause = Literal["refused", "dns", "tls", "unreachable"]


class CannotConnect(TransportError):
    """No connection to ``host`` at all (``cause`` says why). Before the target ever answered, it is the wrong
    target (``run.guard`` stops the run); once it has, it is an outage (``flow.circuit`` rides it out)."""

    def __init__(self, message: str, *, host: str, cause: ConnectCause) -> None:
        super().__init__(message)
        self.host = host
        self.cause: ConnectCause = cause


class RequestTimeout(TransportError):
    """No answer within the request timeout (the server may still be working on it)."""


class PermanentError(APIError):
    """Retrying the same request cannot help."""


class AuthError(PermanentError):
    """HTTP 401/403: the token is missing or refused. Stops the whole run."""


class CreditsExhausted(PermanentError):
    """HTTP 402: the account's monthly credits are spent; every later request gets the same. Stops the run."""


class WrongTarget(PermanentError):
    """HTTP 404/405/410 or a redirect: every image would fail the same way, so the run stops."""


class RejectedImage(PermanentError):
    """HTTP 400/413/415/422 (and other 4xx): the service refused this image."""


class BadResponse(TransientError):
    """A 2xx answer whose body is not the shape the protocol promises: usually a proxy's hiccup, so retried."""


class BadCaption(PermanentError):
    """A caption that still failed a quality gate (empty, refusal, cut off...) after ``--quality-retries``.

    ``flags`` names the gates it failed (``batchcap.tasks.quality``); raised only with ``--on-bad-caption error``.
    """

    def __init__(
        self,
        message: str,
        *,
        flags: tuple[str, ...] = (),
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.flags = flags


def abort_message(exc: APIError, *, where: str, has_token: bool, token_flag: str, check: str) -> str:
    """The one line that stops a run or a bench on a target-level fault, decided by class.

    ``where`` names the service (a host, or a bench target's description); ``token_flag`` is the flag that
    supplies a token; ``check`` says what to look at when the URL or model is wrong.
    """
    if isinstance(exc, AuthError):
        if not has_token:
            return f"{where} requires a token (HTTP {exc.status}) and none was found: set HF_TOKEN or pass {token_flag}"
        return f"the token was refused by {where} (HTTP {exc.status}): check HF_TOKEN or {token_flag}"
    return f"{exc.message}: check {check}"
