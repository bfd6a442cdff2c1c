"""``batchcap export`` and ``batchcap report`` as a user runs them: real subprocesses of ``python -m batchcap``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from captioned import CaptionedRun, make_run


def batchcap(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "batchcap", *map(str, argv)], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.fixture
def captioned_run(tmp_path: Path) -> CaptionedRun:
    """12 images and a broken file, captioned by the real pipeline against the emulator."""
    return make_run(tmp_path)


def test_export_and_report_from_the_command_line(captioned_run: CaptionedRun, tmp_path: Path) -> None:
    run = captioned_run
    done = batchcap("export", run.journal, "--format", "kohya", "--out", tmp_path / "kohya")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"batchcap export: {len(run.captions)} captions exported (kohya)")
    name = min(run.captions)
    assert (tmp_path / "kohya" / Path(name).with_suffix(".txt")).read_text("utf-8") == run.captions[name]
    site = tmp_path / "site"
    done = batchcap("report", run.journal, "--out", site)
    assert done.returncode == 0, done.stderr
    assert f"open {(site / 'index.html').resolve().as_uri()}" in done.stderr
    assert (site / "README.md").read_text("utf-8").startswith("---\ntitle: ")


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = batchcap("export", tmp_path / "r.jsonl", "--format", "zip")
    assert bad.returncode == 2
    assert "invalid choice: 'zip'" in bad.stderr
    missing = batchcap("export", tmp_path / "r.jsonl", "--format", "csv")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0
    assert batchcap("report", tmp_path / "r.jsonl", "--out", tmp_path / "s").returncode == 2
    assert batchcap("report", tmp_path / "r.jsonl").returncode == 2  # --out is required
