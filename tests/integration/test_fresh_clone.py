"""The README's quick start on a fresh clone: ``git clone`` the repository, ``make demo``, twice (issue 21).

It installs from the package index into the clone's own ``.venv`` (a minute or two), so it is not in the default
suite: ``.ci/run`` runs it (``pytest -m fresh_clone``). What is tested is the committed tree, as a user clones it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
#: The whole quick start, set-up included, must finish within this (bounded: a hung step fails the test).
LIMIT_S = 1200

pytestmark = pytest.mark.fresh_clone


def _make_demo(clone: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "HF_"))}
    # PY: the interpreter the clone's .venv is made from (any Python >= 3.11; this one is known to be)
    return subprocess.run(["make", "demo", f"PY={sys.executable}"], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_make_demo_on_a_fresh_clone(tmp_path: Path) -> None:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.fail("the quick start needs git and make")
    clone = tmp_path / "batchcap"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()

    first = _make_demo(clone, LIMIT_S)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = [orjson.loads(line) for line in (clone / "demo" / "captions.jsonl").read_bytes().splitlines()]
    assert len(records) == 300
    assert {r["status"] for r in records} == {"ok"}
    assert (clone / "demo" / "site" / "index.html").is_file()
    out = first.stdout + first.stderr
    assert "a few results" in out
    assert "300 ok, 0 errors, 0 already done" in out
    assert "0 ok, 0 errors, 300 already done" in out  # the second run in the demo sends nothing
    assert "Traceback" not in out

    again = _make_demo(clone, 300)  # the quick start run twice: the samples are there, the captions too
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert len((clone / "demo" / "captions.jsonl").read_bytes().splitlines()) == 300
