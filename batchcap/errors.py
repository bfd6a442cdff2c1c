"""The one exception tree of batchcap.

Decisions (retry, record, abort) are made by class, never by parsing message text::

    BatchcapError
    ├── ConfigError            invalid or missing setting                    -> exit 3 (aborted)
    ├── InputError             unreadable / empty / truncated / not an image -> error record, never retried
    ├── JournalError           journal locked, corrupt, or the disk is full  -> abort, exit 3
    └── APIError(status, request_id)
        ├── TransientError     retried with backoff
        │   ├── RateLimited(retry_after)   429 -> the whole pool backs off
        │   ├── ModelLoading(estimated_time) 503 while the model (or endpoint) wakes; waits do not spend retries
        │   ├── ServerError                5xx
        │   └── TransportError             connect/read timeout, reset, refused
        └── PermanentError     not retried
            ├── AuthError                  401/403 -> abort the run at once
            ├── WrongTarget                404/405/410, redirects: the URL or model is wrong -> abort the run
            ├── RejectedImage              400/404/413/415/422 -> error record
            ├── BadResponse                2xx with a body we cannot read -> error record
            └── BadCaption(flags)          2xx caption that failed the quality gates after its retries
                                           (--on-bad-caption error) -> error record
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthError",
    "BadCaption",
    "BadResponse",
    "BatchcapError",
    "ConfigError",
    "InputError",
    "JournalError",
    "ModelLoading",
    "PermanentError",
    "RateLimited",
    "RejectedImage",
    "ServerError",
    "TransientError",
    "TransportError",
    "WrongTarget",
]


class BatchcapError(Exception):
    """Base of every error batchcap raises on purpose."""


class ConfigError(BatchcapError):
    """A setting is missing or invalid; the message names the setting and how to fix it."""


class InputError(BatchcapError):
    """One input file cannot be sent (unreadable, empty, truncated, not an image, too large)."""


class JournalError(BatchcapError):
    """The results journal cannot be used: locked by another run, corrupt mid-file, or the disk is full."""


class APIError(BatchcapError):
    """The service, or the way to it, failed one request."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id


class TransientError(APIError):
    """Worth another attempt after a pause."""


class RateLimited(TransientError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.retry_after = retry_after


class ModelLoading(TransientError):
    """HTTP 503 (or 502) while a model loads or an endpoint scales up from zero."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 503,
        request_id: str | None = None,
        estimated_time: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.estimated_time = estimated_time


class ServerError(TransientError):
    """HTTP 5xx (and 408) that is not a cold start."""


class TransportError(TransientError):
    """No HTTP answer: timeout, refused or reset connection, broken stream."""


class PermanentError(APIError):
    """Retrying the same request cannot help."""


class AuthError(PermanentError):
    """HTTP 401/403: the token is missing or refused. Stops the whole run."""


class WrongTarget(PermanentError):
    """HTTP 404/405/410 or a redirect: every image would fail the same way, so the run stops."""


class RejectedImage(PermanentError):
    """HTTP 400/413/415/422 (and other 4xx): the service refused this image."""


class BadResponse(PermanentError):
    """A 2xx answer whose body is not the shape the protocol promises."""


class BadCaption(PermanentError):
    """A caption that still failed a quality gate (empty, refusal, cut off...) after ``--quality-retries``.

    ``flags`` names the gates it failed (``batchcap.quality``); raised only with ``--on-bad-caption error``.
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
