"""Every image of Pillow's own test suite ends as a ``Prepared`` or an ``InputError`` with a reason, nothing else.

Pillow's ``Tests/images`` (1,060 files in 13.0.0) is the corpus of damaged, fuzzed, exotic and bomb files its
maintainers collected over 15 years. The sdist of the installed Pillow is fetched once with pip (the only
network: PyPI) into ``.cache/pillow-tests/<version>/`` (git-ignored) and reused: ~25 s the first time on a
fresh machine (pip prepares the sdist's metadata), ~2 s after.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import PIL
import pytest

from batchcap.errors import InputError
from batchcap.prepare import PrepareSettings, prepare

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


@pytest.mark.filterwarnings("ignore")  # Pillow warns about the damage it was built to survive
def test_every_pillow_test_image_is_prepared_or_refused_with_a_reason(pillow_test_images: list[Path]) -> None:
    assert len(pillow_test_images) > 500
    settings = PrepareSettings()
    outcomes = {"passed": 0, "prepared": 0, "refused": 0}
    reasons: list[tuple[str, str]] = []
    for path in pillow_test_images:
        data = path.read_bytes()
        try:
            out = prepare(data, settings)
        except InputError as exc:
            reasons.append((path.name, str(exc)))
            outcomes["refused"] += 1
            continue
        assert max(out.width, out.height) <= settings.max_side, path.name
        assert len(out.data) <= settings.max_upload_bytes, path.name
        outcomes["prepared" if out.prepared else "passed"] += 1
        if out.prepared:
            assert out.mime in ("image/jpeg", "image/png"), path.name
    assert all(len(reason) > 10 for _, reason in reasons), [r for r in reasons if len(r[1]) <= 10]
    # Most of them are real images that must get through; the rest are exotic formats, bombs and damage.
    assert outcomes["passed"] + outcomes["prepared"] > 600, outcomes
