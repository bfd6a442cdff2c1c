"""batchcap: caption whole image folders through hosted inference services, resumably.

    import anyio, batchcap
    cfg = batchcap.RunConfig(input_dir=Path("photos"), out=Path("captions.jsonl"), model="org/model").validate()
    stats = anyio.run(batchcap.run, cfg)   # RunStats(ok=950, failed=12, skipped=0, retried=40, elapsed=191.2)
"""

from __future__ import annotations

import importlib.metadata as _metadata

try:
    __version__ = _metadata.version("batchcap")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

from .config import RunConfig, Secret, find_token
from .errors import (
    APIError,
    AuthError,
    BadResponse,
    BatchcapError,
    ConfigError,
    InputError,
    JournalError,
    ModelLoading,
    PermanentError,
    RateLimited,
    RejectedImage,
    ServerError,
    TransientError,
    TransportError,
    WrongTarget,
)
from .models import ErrorInfo, ImageJob, LoadedImage, Record
from .pipeline import RunAborted, RunStats, run

__all__ = [
    "APIError",
    "AuthError",
    "BadResponse",
    "BatchcapError",
    "ConfigError",
    "ErrorInfo",
    "ImageJob",
    "InputError",
    "JournalError",
    "LoadedImage",
    "ModelLoading",
    "PermanentError",
    "RateLimited",
    "Record",
    "RejectedImage",
    "RunAborted",
    "RunConfig",
    "RunStats",
    "Secret",
    "ServerError",
    "TransientError",
    "TransportError",
    "WrongTarget",
    "__version__",
    "find_token",
    "run",
]
