"""What a bench ran on: package versions, the git commit, the machine (never the host or user name)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from batchcap.version import __version__

__all__ = ["machine", "versions"]


def versions(loop: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"batchcap": __version__, "python": platform.python_version(), "event_loop": loop}
    for dist in ("aiohttp", "anyio", "orjson", "pillow", "matplotlib", "uvloop"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["git_commit"] = _git_commit()
    return out


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
    }  # no hostname or user name: bench.json gets shared
