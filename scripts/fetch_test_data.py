"""Fetch what the test suite reads from the package index, once, at set-up (``make venv``), never during a test.

Today that is Pillow's own test images (``Tests/images`` of the sdist of the installed Pillow), ~1,500 odd files
the preparation tests run through ``prepare``. They go to ``.cache/pillow-tests/<version>/images``; a second run
does nothing. Without network the tests that need them are skipped and say to run ``make venv`` again.

    .venv/bin/python scripts/fetch_test_data.py
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import PIL

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "pillow-tests" / PIL.__version__


def pillow_test_images(cache: Path = CACHE) -> Path:
    """The folder of Pillow's test images, downloaded and extracted if not there yet."""
    images, done = cache / "images", cache / "extracted"
    if done.exists():
        return images
    cache.mkdir(parents=True, exist_ok=True)
    sdists = list(cache.glob("pillow-*.tar.gz"))
    if not sdists:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
               f"pillow=={PIL.__version__}", "-d", str(cache)]
        subprocess.run(cmd, check=True, timeout=600)
        sdists = list(cache.glob("pillow-*.tar.gz"))
    with tarfile.open(sdists[0]) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) > 3 and parts[1:3] == ("Tests", "images"):
                member.name = str(Path(*parts[3:]))
                tar.extract(member, images, filter="data")
    done.touch()
    return images


def main() -> int:
    try:
        images = pillow_test_images()
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"fetch_test_data: cannot fetch Pillow's test images ({exc}); the tests that use them will be "
              "skipped until this succeeds", file=sys.stderr)
        return 0  # a set-up without network still gives a working venv
    print(f"fetch_test_data: {sum(1 for p in images.rglob('*') if p.is_file())} Pillow test images in {images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
