"""batchcap: caption whole image folders through hosted inference services, resumably.

    import anyio, batchcap
    cfg = batchcap.RunConfig.build(input_dir="photos", out="captions.jsonl", model="org/model").validate()
    stats = anyio.run(batchcap.run, cfg)   # RunStats(ok=950, failed=12, skipped=0, retried=40, elapsed=191.2)
"""

from __future__ import annotations

from batchcap.config import RunConfig
from batchcap.errors import (
    Aborted,
    APIError,
    AuthError,
    BadCaption,
    BadResponse,
    BatchcapError,
    BenchAborted,
    BudgetReached,
    ConfigError,
    CreditsExhausted,
    InputError,
    JournalError,
    ModelLoading,
    PermanentError,
    QueueFull,
    QuotaExhausted,
    RateLimited,
    RejectedImage,
    RequestTimeout,
    RunAborted,
    ServerError,
    TransientError,
    TransportError,
    UsageError,
    WrongTarget,
)
from batchcap.models import ErrorInfo, ImageJob, LoadedImage, Record, Usage
from batchcap.run import RunStats, run
from batchcap.service.auth import Secret, find_token
from batchcap.version import __version__

__all__ = [
    "APIError",
    "Aborted",
    "AuthError",
    "BadCaption",
    "BadResponse",
    "BatchcapError",
    "BenchAborted",
    "BudgetReached",
    "ConfigError",
    "CreditsExhausted",
    "ErrorInfo",
    "ImageJob",
    "InputError",
    "JournalError",
    "LoadedImage",
    "ModelLoading",
    "PermanentError",
    "QueueFull",
    "QuotaExhausted",
    "RateLimited",
    "Record",
    "RejectedImage",
    "RequestTimeout",
    "RunAborted",
    "RunConfig",
    "RunStats",
    "Secret",
    "ServerError",
    "TransientError",
    "TransportError",
    "Usage",
    "UsageError",
    "WrongTarget",
    "__version__",
    "find_token",
    "run",
]
