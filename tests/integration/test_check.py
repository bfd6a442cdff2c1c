"""``batchcap check`` over loopback: right counts, nothing sent without --probe, an estimate a run keeps."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from PIL import Image, ImageFilter

from batchcap import RunConfig, run
from batchcap.emulator import EmulatorSettings, RunningEmulator
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = "Salesforce/blip-image-captioning-base"


def check_json(*argv: str | Path) -> tuple[int, dict[str, Any], str]:
    """``batchcap check ARGV --json`` as a subprocess: exit code, the JSON object (or {}), stderr."""
    proc = subprocess.run([sys.executable, "-m", "batchcap", "check", *map(str, argv), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, (orjson.loads(proc.stdout) if proc.stdout.strip() else {}), proc.stderr


async def acheck(*argv: str | Path) -> tuple[int, dict[str, Any], str]:
    """The same, awaited: the test's emulator keeps serving meanwhile."""
    proc = await anyio.run_process([sys.executable, "-m", "batchcap", "check", *map(str, argv), "--json"],
                                   check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    return proc.returncode, (orjson.loads(out) if out.strip() else {}), err


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """30 distinct images, 10 byte-identical copies in another folder, 4 broken files."""
    folder = tmp_path / "photos"
    paths = generate(folder / "camera", 30, seed=5)
    (folder / "backup").mkdir()
    for i, p in enumerate(paths[:10]):
        shutil.copyfile(p, folder / "backup" / f"copy_{i}{p.suffix}")
    bad = folder / "bad"
    bad.mkdir()
    jpeg = next(p for p in paths if p.suffix == ".jpg").read_bytes()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "notes.png").write_bytes(b"these are my holiday notes, not a picture\n")
    # passes the structural check, but run's preparation refuses it from its header: an InputError, unsent
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    (folder / "readme.txt").write_text("not an image extension: not counted")
    return folder


async def test_counts_and_nothing_sent(emulator: Emulator, messy: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    profile = tmp_path / "emu.toml"
    profile.write_text(f'endpoint = "{server.url}/"\nrate = 5\nburst = 2\nconcurrency = 2\n')
    code, report, err = await acheck(messy, "--target", profile)
    assert code == 0, err
    assert report["files"] == 44
    assert report["images"] == 40
    assert report["unreadable"] == 4  # corrupt.png too: run's preparation refuses it, as run records it
    assert report["duplicates"] == 10
    assert report["already_done"] == 0
    assert report["to_caption"] == 30
    assert report["header_unreadable"] == 0
    assert report["bytes"] == sum(p.stat().st_size for p in messy.rglob("*") if p.suffix != ".txt" and p.is_file())
    assert 0 < report["bytes_to_send"] <= report["bytes"]
    reasons = set(report["unreadable_reasons"])
    assert {"empty file", "truncated JPEG (no end-of-image marker)",
            "not an image (starts with b'these are my')"} < reasons
    assert any(r.startswith("not an image format batchcap can prepare") for r in reasons)
    copies = {e["path"]: e["duplicate_of"] for e in report["duplicate_examples"]}
    assert len(copies) == 10  # "backup" sorts before "camera": the backup copies are met first
    assert all(p.startswith("camera/") and o.startswith("backup/copy_") for p, o in copies.items())
    est = report["estimate"]
    assert est["requests"] == 30
    assert est["bound"] == "rate"
    assert est["wall_s"] == pytest.approx((30 - 2) / 5 + 0.2, rel=0.01)
    assert report["probe"] is None
    assert server.log.count() == 0  # nothing was sent


def test_no_target_no_estimate_and_human_report(messy: Path) -> None:
    code, report, _ = check_json(messy)
    assert code == 0
    assert report["estimate"] is None
    proc = subprocess.run([sys.executable, "-m", "batchcap", "check", str(messy)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    text = proc.stdout
    assert "44 image files" in text
    assert "10 exact copies" in text
    assert "truncated JPEG" in text


async def test_already_done_after_a_run(emulator: Emulator, messy: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    out = tmp_path / "results.jsonl"
    cfg = RunConfig.build(input_dir=messy, out=out, model=MODEL, api_base=f"{server.url}/hf-inference",
                    concurrency=8, rate=None, burst=8, timeout=5.0).validate()
    with anyio.fail_after(30):
        stats = await run(cfg)
    sent = server.log.count()
    assert stats.ok == 40
    code, report, err = await acheck(messy, "--out", out)
    assert code == 0, err
    assert report["already_done"] == 40
    assert report["earlier_errors"] == 4  # 3 unreadable + corrupt.png refused by preparation: final errors
    assert report["to_caption"] == 0
    assert report["bytes_to_send"] == 0
    code, report, _ = await acheck(messy, "--out", out, "--retry-failed")
    assert report["to_caption"] == 0  # retried, every one of the 4 is refused again before sending
    assert server.log.count() == sent


async def test_probe_sends_exactly_n(emulator: Emulator, messy: Path) -> None:
    server = await emulator(EmulatorSettings(latency=0.01))
    with anyio.fail_after(30):
        code, report, err = await acheck(messy, "--target", f"openai:{MODEL}@{server.url}/v1", "--probe", "5",
                                         "--rate", "unlimited", "--price-per-hour", "1.20")
    assert code == 0, err
    assert server.log.count() == 5
    probe = report["probe"]
    assert probe["requests"] == 5
    assert probe["ok"] == 5
    assert probe["latency_mean_s"] >= 0.01
    est = report["estimate"]
    assert est["latency_source"] == "probe"
    assert est["bound"] == "concurrency"
    assert est["cost"] is not None
    assert est["cost"] > 0


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--probe", "3"], "--probe needs a target"),
        (["--target", "hf:m", "--probe", "1000"], "at most"),
        (["--target", "ftp://x"], "--target"),
        (["--target", "x=ftp://y"], "SPEC must start"),
        (["--jpeg-quality", "150"], "--jpeg-quality"),
        (["--api", "openai", "--base-url", "http://127.0.0.1:9/v1"], "--model"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(messy: Path, argv: list[str], says: str) -> None:
    got, report, err = check_json(messy, *argv)
    assert got == 2
    assert says in err
    assert report == {}
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("batchcap check: ")


def test_missing_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    got, _, err = check_json(tmp_path / "nope")
    assert got == 2
    assert "does not exist" in err
    assert len(err.strip().splitlines()) == 1


def test_near_copies_are_counted_with_dedupe_near(tmp_path: Path) -> None:
    folder = tmp_path / "near"
    folder.mkdir()
    for seed in range(6):
        rng = random.Random(seed)
        grid = Image.new("RGB", (6, 6))
        grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(36)])
        im = grid.resize((320, 240), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        im.save(folder / f"p{seed}.jpg", quality=90)
        if seed < 3:
            im.resize((160, 120)).save(folder / f"p{seed}_small.jpg", quality=70)
    _, exact, _ = check_json(folder)
    _, near, _ = check_json(folder, "--dedupe", "near")
    assert exact["duplicates"] == 0
    assert exact["near_duplicates"] is None
    assert near["near_duplicates"] == 3
    assert near["to_caption"] == 6
    _, off, _ = check_json(folder, "--no-dedupe")
    assert off["to_caption"] == 9


@pytest.mark.timing  # the run's wall time on a loaded machine is the measure
async def test_estimate_is_within_25_percent_of_the_run(emulator: Emulator, tmp_path: Path) -> None:
    """A service limited to 20 req/s, a profile that says so: check's forecast vs the run's wall time.

    (A profile whose rate is *above* the service's limit meets 429s, and the run halves its rate on each:
    check cannot know that limit without a probe, and says so in its notes when a probe is throttled.)
    """
    folder = tmp_path / "rate"
    generate(folder, 60, seed=9)
    server = await emulator(EmulatorSettings(rate=20, latency=0.02))
    profile = tmp_path / "limited.toml"
    profile.write_text(f'endpoint = "{server.url}/"\nrate = 20\nburst = 4\nconcurrency = 4\ntimeout = 10\n')
    code, report, err = await acheck(folder, "--target", profile)
    assert code == 0, err
    assert server.log.count() == 0
    forecast = report["estimate"]["wall_s"]
    cfg = RunConfig.build(input_dir=folder, out=tmp_path / "r.jsonl", endpoint=f"{server.url}/", rate=20, burst=4,
                    concurrency=4, timeout=10).validate()
    started = time.monotonic()
    with anyio.fail_after(30):
        stats = await run(cfg)
    wall = time.monotonic() - started
    assert stats.ok == 60
    assert abs(forecast - wall) <= 0.25 * wall, (forecast, wall)
