"""Pillow's own test images (fetched by ``make venv``; the corpus fixtures are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import PIL
import pytest

CACHE = Path(__file__).resolve().parents[3] / ".cache" / "pillow-tests" / PIL.__version__


@pytest.fixture(scope="session")
def pillow_test_images() -> list[Path]:
    images = CACHE / "images"
    done = CACHE / "extracted"
    if not done.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        sdists = list(CACHE.glob("pillow-*.tar.gz"))
        if not sdists:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
            cmd += [f"pillow=={PIL.__version__}", "-d", str(CACHE)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            sdists = list(CACHE.glob("pillow-*.tar.gz"))
            if proc.returncode != 0 or not sdists:
                pytest.skip(f"cannot download Pillow's sdist from PyPI: {proc.stderr.strip()[-300:]}")
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and len(parts) > 3 and parts[1:3] == ("Tests", "images"):
                    member.name = str(Path(*parts[3:]))
                    tar.extract(member, images, filter="data")
        done.touch()
    return sorted(p for p in images.rglob("*") if p.is_file())
