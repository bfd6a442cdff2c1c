"""The installed version, read once from the package metadata (a leaf module: anything may import it)."""

from __future__ import annotations

import importlib.metadata as _metadata

__all__ = ["__version__"]

try:
    __version__ = _metadata.version("batchcap")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"
