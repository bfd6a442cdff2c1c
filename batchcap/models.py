"""Typed records that flow between the pipeline stages and into the journal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DEFAULT_TASK", "Ask", "DatasetJob", "ErrorInfo", "ImageJob", "LoadedImage", "Preparation", "Quota",
           "Record", "Status", "Usage"]

Status = Literal["ok", "error"]
#: The one task of a run without ``--task``: today's prompt, and the name every older journal line implies.
DEFAULT_TASK = "caption"


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image a source found. ``path`` is its stable id, the journal key: for a folder the POSIX path relative
    to it; for a dataset ``train-00000.parquet#1234`` or ``shard-00001.tar/000000042.jpg`` (``source.datasets``).
    ``abspath`` is where a folder image is read from (a local path, or an fsspec URL)."""

    path: str
    abspath: str
    size: int

    @property
    def context(self) -> Mapping[str, str] | None:
        """What the source says of the image, for prompt templates (a dataset's: ``DatasetJob.context``);
        ``batchcap.tasks.template`` offers it next to folder, path, stem, sidecar and exif."""
        return None


@dataclass(frozen=True, slots=True)
class DatasetJob(ImageJob):
    """An image of a dataset (parquet, WebDataset): its bytes come with it, read in order from the shard (``data``,
    dropped once loaded), and ``context`` holds what the dataset says of it: the row's other columns, a tar
    sample's ``.txt`` or ``.json`` (by extension), as text. A subclass: a folder's jobs stay the three fields
    they were, made and read as before."""

    data: bytes | None = field(default=None, repr=False, compare=False)
    context: Mapping[str, str] | None = field(default=None, compare=False)  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Ask:
    """One task to ask of one image: the task's name and its prompt rendered for this image.

    ``prompt`` is None for targets that take no prompt (raw image bytes). ``stale``: the journal holds an
    answer for this image and task that was made with other settings (it is asked again).
    """

    task: str
    prompt: str | None = None
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Preparation:
    """What preparation made of one file (issue 8): the original, and the image that is sent instead."""

    prepared: bool  #: False: the file is sent byte for byte
    original_bytes: int
    original_width: int
    original_height: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """File bytes that passed the sniff; ``mime`` comes from the magic bytes, not the extension.

    After preparation ``data``/``mime`` are what is sent and ``prep`` says what the file was; None when
    preparation is off (``--max-side 0``) or not run yet.
    """

    job: ImageJob
    data: bytes
    mime: str
    prep: Preparation | None = None
    #: Hex digest of the file's bytes as read (``batchcap.source.digest.content_digest``), before preparation.
    digest: str | None = None
    #: What to ask of this image (one per task not answered yet); empty until the run's planner has decided.
    asks: tuple[Ask, ...] = ()

    # On every image's path: a direct call costs ~1 us where ``dataclasses.replace`` costs ~3-4.
    def with_digest(self, digest: str) -> LoadedImage:
        """This image with its content digest."""
        return LoadedImage(self.job, self.data, self.mime, self.prep, digest, self.asks)

    def with_asks(self, asks: tuple[Ask, ...]) -> LoadedImage:
        """This image with what to ask of it."""
        return LoadedImage(self.job, self.data, self.mime, self.prep, self.digest, asks)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why an image has no caption. ``retryable`` errors are tried again on resume; the others are final."""

    type: str
    message: str
    http_status: int | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a token-billed service reported for one image (``usage`` of an OpenAI-style answer), summed over
    the attempts it billed (quality retries)."""

    prompt_tokens: int
    completion_tokens: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True, slots=True)
class Record:
    """One journal line: one task's answer for one image. Exactly one of ``caption`` / ``error`` is set.

    ``data`` is the parsed JSON of a schema task's answer (``caption`` keeps its text). ``fingerprint`` says
    what produced it (``batchcap.tasks.fingerprint``); ``digest`` is the image content's. Both are None on
    lines older than issue 16 and on errors that belong to no request (an unreadable file has no digest).
    """

    path: str
    status: Status
    caption: str | None = None
    error: ErrorInfo | None = None
    attempts: int = 0
    latency_s: float | None = None
    bytes_sent: int = 0
    target: str = ""
    request_id: str | None = None
    ts: float = 0.0
    prep: Preparation | None = None  #: ok records of prepared runs: original and sent bytes and size
    flags: tuple[str, ...] = ()  #: quality gates the caption failed (``batchcap.tasks.quality``), kept with --on-bad-caption flag
    duplicate_of: str | None = None  #: the path of the image that was sent for this identical (or near) copy
    usage: Usage | None = None  #: tokens the service reported (token-billed targets), summed over billed attempts
    provider: str | None = None  #: who served it, when the router says (``x-inference-provider``)
    cost_usd: float | None = None  #: what the image cost, when a price is known (``batchcap.run.spend``)
    task: str = DEFAULT_TASK
    data: Any = None
    fingerprint: str | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """What one answer's rate-limit headers said (``batchcap.flow.window`` reads them); None where not said.

    ``remaining`` requests are left in the current window, which refills in ``reset`` seconds; the policy is
    ``limit`` requests per ``window`` seconds; ``retry_after`` is a 429's own wait.
    """

    remaining: float | None = None
    reset: float | None = None
    limit: float | None = None
    window: float | None = None
    retry_after: float | None = None
