"""Issue 21: what a new user meets in the first hour, each papercut as the user meets it (the real CLI)."""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from batchcap.cli import EXIT_OK, EXIT_USAGE, main
from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator
from batchcap.run import manifest_path
from batchcap.site.build import SiteOptions, build_site
from batchcap.source.samples import generate
from batchcap.words import plural

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = DEFAULT_MODEL_ID


def test_samples_help_says_what_each_flag_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples", "--help"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "Write COUNT deterministic sample images" in text
    for flag, words in (("DEST", "folder to write into"), ("--count", "number of images"),
                        ("--seed", "another seed"), ("--force", "already holds other files")):
        assert flag in text, flag
        assert words in text, flag


def test_samples_refuses_a_folder_with_other_files_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "Pictures"
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"my own photo")
    assert main(["samples", str(photos), "--count", "5"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "already holds other files (IMG_0001.jpg)" in err
    assert "--force" in err
    assert sorted(p.name for p in photos.rglob("*")) == ["IMG_0001.jpg"]  # nothing written

    assert main(["samples", str(photos), "--count", "5", "--force"]) == EXIT_OK
    assert (photos / "IMG_0001.jpg").read_bytes() == b"my own photo"
    assert len([p for p in photos.rglob("img_*") if p.is_file()]) == 5

    fresh = tmp_path / "demo-images"
    assert main(["samples", str(fresh), "--count", "3"]) == EXIT_OK
    assert main(["samples", str(fresh), "--count", "3"]) == EXIT_OK  # earlier samples: the demo runs twice
    assert "3 sample images in" in capsys.readouterr().err
    assert main(["samples", str(fresh / "one"), "--count", "1"]) == EXIT_OK
    assert "1 sample image in" in capsys.readouterr().err


TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "{dir}", "--model", "m/m", "--token-file", TOKEN],
        ["run", "{dir}", "--model", "m/m", TOKEN],  # a stray value: argparse's own "unrecognized arguments"
        ["run", "{dir}", "--model", TOKEN],
        ["run", TOKEN, "--model", "m/m"],
        ["run", "{dir}", "--config", TOKEN],
        ["run", "{dir}", "--endpoint", TOKEN],
        ["run", "{dir}", "--target", TOKEN],
        ["run", "{dir}", "--target", f"free={TOKEN}"],
        ["run", "{dir}", "--model", "m/m", "--rate", TOKEN],
        ["bench", "{dir}", "--target", "free=hf:m/m", "--token-file", TOKEN],
        ["check", "{dir}", "--model", "m/m", "--api-base", "http://127.0.0.1:9", "--probe", "1", "--token-file", TOKEN],
        ["serve", "--auth", "protected", "--token-file", TOKEN, "--port", "0"],
        ["export", TOKEN, "--format", "csv"],
        ["report", TOKEN, "--out", "{dir}/site"],
        ["merge", "{dir}/out.jsonl", TOKEN],
    ],
    ids=lambda argv: "-".join(a for a in argv[:4] if TOKEN not in a and "{" not in a),
)
def test_a_token_pasted_as_a_value_is_never_printed(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate(tmp_path, 1, seed=0)  # a folder with an image: check gets as far as its probe (and the token)
    code = main([a.replace("{dir}", str(tmp_path)) for a in argv])
    out = capsys.readouterr()
    assert code in (2, 3), out.err
    assert TOKEN not in out.out + out.err
    assert TOKEN[3:] not in out.out + out.err
    if "--token-file" in argv:
        assert "this looks like a token, not a file: set HF_TOKEN instead" in out.err


@pytest.mark.parametrize("kind", ["empty", "no images"])
def test_a_folder_without_images_says_so_and_exits_1(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    if kind == "no images":
        for name in ("notes.txt", "export.json", "album/meta.json", "album/thumbs.db"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("{}")
        expected = (f"no images found in {folder} (4 files skipped: .json, .db, .txt); batchcap captions files "
                    "ending in .avif .bmp .gif .heic .heif .jpeg .jpg .png .tif .tiff .webp")
    else:
        expected = f"no images found in {folder}: the folder is empty"
    out = tmp_path / "captions.jsonl"
    # the API base is a closed port: nothing may be sent, and nothing is
    assert main(["run", str(folder), "--out", str(out), "--model", "org/m", "--api-base", "http://127.0.0.1:9"]) == 1
    assert capsys.readouterr().err == f"batchcap: {expected}\n"
    assert not out.exists()  # no journal, no manifest for a run that had nothing to do
    assert main(["check", str(folder)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"batchcap check: {expected}\n"
    assert "0 image files" in captured.out  # the report is still printed


async def test_export_and_report_of_a_journal_a_run_is_writing(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --wait: what the run held then, said so, exit 1. With --wait: after the run, all of it, exit 0."""
    folder = tmp_path / "imgs"
    generate(folder, 24, seed=2)
    server = await emulator(EmulatorSettings(latency=0.1))
    out = tmp_path / "captions.jsonl"
    cmd = [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model", MODEL,
           "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited", "--concurrency", "fixed:1", "--quiet"]
    async with await anyio.open_process(cmd) as proc:
        with anyio.fail_after(30):
            while not out.exists() or out.read_bytes().count(b"\n") < 2:
                await anyio.sleep(0.02)
        code = await anyio.to_thread.run_sync(main, ["export", str(out), "--format", "csv"])
        partial = (tmp_path / "captions.csv").read_text().count("\n") - 1
        err = capsys.readouterr().err
        assert code == 1, err
        assert 2 <= partial < 24
        assert (f"batchcap export: a batchcap run is still writing {out} (it holds the journal's lock): this read "
                f"{plural(partial, 'image')} ({plural(partial, 'caption')}), what it had written so far") in err
        assert "add --wait" in err

        code = await anyio.to_thread.run_sync(main, ["report", str(out), "--out", str(tmp_path / "site"), "--wait",
                                                     "60"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert f"batchcap report: a batchcap run is writing {out}; waiting up to 60 s" in err
        assert "24 records (24 ok, 0 errors)" in err
        assert "still writing" not in err
        await proc.wait()
    assert proc.returncode == 0
    assert await anyio.to_thread.run_sync(main, ["export", str(out), "--format", "csv", "--wait"]) == 0
    assert (tmp_path / "captions.csv").read_text().count("\n") == 25


async def test_a_typo_in_the_model_id_stops_the_run_against_the_emulator(
    emulator: Emulator, tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    generate(folder, 5, seed=1)
    server = await emulator(EmulatorSettings())
    out = tmp_path / "captions.jsonl"
    cmd = [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model",
           "Salesforce/blip-image-captioning-bsae", "--api-base", f"{server.url}/hf-inference", "--quiet"]
    with anyio.fail_after(60):
        result = await anyio.run_process(cmd, check=False)
    err = result.stderr.decode()
    assert result.returncode == 3, err
    assert "HTTP 404" in err
    assert "check --model" in err
    assert out.read_bytes() == b""  # nothing captioned, nothing recorded as failed


def _summary_rate(err: str) -> tuple[int, float, str]:
    """(images recorded, seconds, img/s as printed) from a run's summary line."""
    found = re.search(r"batchcap: (\d+) ok, (\d+) errors?, \d+ already done, in ([\d.]+) s \(([\d.]+) img/s", err)
    assert found, err
    return int(found[1]) + int(found[2]), float(found[3]), found[4]


def _report_throughput(journal: Path, site: Path) -> dict[str, Any]:
    build_site(journal, SiteOptions(out=site))
    raw = (site / "data" / "meta.js").read_bytes()
    meta = orjson.loads(raw.removeprefix(b"self.BATCHCAP_META = ").rstrip(b";\n"))
    throughput: dict[str, Any] = meta["throughput"]
    return throughput


async def test_summary_manifest_and_report_agree_and_a_resume_does_not_count_the_gap(
    emulator: Emulator, tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    generate(folder, 60, seed=4)
    server = await emulator(EmulatorSettings(latency=0.03))
    out = tmp_path / "captions.jsonl"
    cmd = [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model", MODEL,
           "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited", "--concurrency", "fixed:2", "--quiet"]

    # an evening's run, interrupted
    with anyio.fail_after(60):
        async with await anyio.open_process(cmd) as proc:
            while not out.exists() or out.read_bytes().count(b"\n") < 10:
                await anyio.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            await proc.wait()
            assert proc.stderr is not None
            err = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert proc.returncode == 130, err
    first_images, _, first_rate = _summary_rate(err)
    manifest = orjson.loads(manifest_path(out).read_bytes())
    assert manifest["throughput"]["images"] == first_images
    assert f"{manifest['throughput']['images_per_s']:.1f}" == first_rate  # the summary's number, the manifest's
    report = _report_throughput(out, tmp_path / "site1")
    assert f"{report['per_s']:.1f}" == first_rate  # and the report's
    assert report["images"] == first_images
    assert report["idle_s"] == 0
    first_busy = manifest["throughput"]["busy_s"]

    # ... as the files are the next morning: the same records and manifest, written 10 hours ago
    night = 10 * 3600.0
    shifted = []
    for line in out.read_bytes().splitlines():
        record = orjson.loads(line)
        record["ts"] -= night
        shifted.append(orjson.dumps(record))
    out.write_bytes(b"\n".join(shifted) + b"\n")
    manifest["started_at"] -= night
    for run in manifest["invocations"]:
        run["started_at"] -= night
    manifest_path(out).write_bytes(orjson.dumps(manifest))

    # the resume
    with anyio.fail_after(60):
        result = await anyio.run_process(cmd, check=False)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    second_images, _, _ = _summary_rate(err)
    assert first_images + second_images == 60
    manifest = orjson.loads(manifest_path(out).read_bytes())
    total = manifest["throughput"]
    assert total["invocations"] == 2
    assert total["images"] == 60
    second_busy = manifest["invocations"][1]["elapsed_s"]
    assert total["busy_s"] == pytest.approx(first_busy + second_busy, abs=0.002)  # not the 10 hours between
    report = _report_throughput(out, tmp_path / "site2")
    assert report["busy_s"] == pytest.approx(total["busy_s"], abs=0.002)
    assert f"{report['per_s']:.1f}" == f"{total['images_per_s']:.1f}"
    assert report["invocations"] == 2
    assert report["idle_s"] > night - 60
    assert "not counted" in report["definition"]  # what the report's tooltip says
    assert sum(report["ok"]) + sum(report["errors"]) == 60
    bins = len(report["ok"])  # the chart's time axis is the busy time too (bin_s is rounded to the ms)
    assert report["bin_s"] * bins == pytest.approx(report["busy_s"], abs=bins * 0.0005 + 1e-9)
