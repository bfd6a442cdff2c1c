"""``batchcap export`` and ``batchcap report`` as a user runs them: real subprocesses of ``python -m batchcap``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from captioned import CaptionedRun, make_run
from conftest import MODEL, EmulatorFactory

from batchcap.emulator import EmulatorSettings
from batchcap.source.samples import generate


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


async def test_export_report_and_merge_work_from_another_folder(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """The run is started with relative paths; every reader of its manifest is run from somewhere else."""
    server = await emulator(EmulatorSettings(latency=0))
    generate(tmp_path / "photos", 6, seed=1)
    (tmp_path / "runs").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": "/nonexistent"}
    env.pop("HF_TOKEN", None)
    run = [sys.executable, "-m", "batchcap", "run", "photos", "--out", "runs/r.jsonl", "--model", MODEL, "-q",
           "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited"]
    with anyio.fail_after(60):
        done = await anyio.run_process(run, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    journal = tmp_path / "runs" / "r.jsonl"
    for argv in (["export", journal, "--format", "kohya", "--out", "new/k"],  # --out's missing folders are made
                 ["export", journal, "--format", "csv", "--out", "new/csv/here"],
                 ["report", journal, "--out", "new/site"],
                 ["merge", "new/merged/all.jsonl", journal],
                 ["export", "new/merged/all.jsonl", "--format", "imagefolder"]):
        with anyio.fail_after(60):
            got = await anyio.run_process([sys.executable, "-m", "batchcap", *map(str, argv)], cwd=elsewhere,
                                          env=env, check=False)
        assert got.returncode == 0, (argv, got.stderr.decode())
    assert len(list((elsewhere / "new" / "k").rglob("*.txt"))) == 6
    assert (elsewhere / "new" / "csv" / "here" / "metadata.csv").is_file()
    assert list((elsewhere / "new" / "site" / "thumbs").rglob("*"))  # the report found the images: thumbnails
    assert (tmp_path / "photos" / "metadata.jsonl").exists()  # imagefolder beside the images of the merged run


def test_an_export_does_not_put_an_image_over_a_file_it_did_not_write(captioned_run: CaptionedRun,
                                                                      tmp_path: Path) -> None:
    """A user's photo in --out under the name of an exported image is kept: exit 2 before anything is written;
    the export's own images (links, copies, converted files, even after the source changed) are replaced freely."""
    run = captioned_run
    name = min(run.captions)
    out = tmp_path / "ds"
    (out / name).parent.mkdir(parents=True)
    (out / name).write_bytes(b"my own photo, not the exported one")
    for fmt in ("imagefolder", "kohya"):
        refused = batchcap("export", run.journal, "--format", fmt, "--out", out)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1
        assert name in refused.stderr
        assert "--overwrite" in refused.stderr
        assert (out / name).read_bytes() == b"my own photo, not the exported one"
        assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [Path(name).name]  # nothing written

    (out / name).rename(tmp_path / "mine.jpg")
    assert batchcap("export", run.journal, "--format", "imagefolder", "--out", out).returncode == 0
    src = run.images / name  # the user edits the photo in an editor that saves by rename: a new file
    (run.images / "edited.tmp").write_bytes(src.read_bytes() + b"\0")
    (run.images / "edited.tmp").replace(src)
    again = batchcap("export", run.journal, "--format", "imagefolder", "--out", out)  # its own link, replaced
    assert again.returncode == 0, again.stderr
    assert (out / name).read_bytes() == src.read_bytes()

    png = next(n for n in sorted(run.captions) if n.endswith(".png"))
    jpegs = tmp_path / "jpegs"
    for _ in range(2):  # converted copies are the export's own: a second export replaces them
        done = batchcap("export", run.journal, "--format", "imagefolder", "--out", jpegs, "--convert", "jpeg")
        assert done.returncode == 0, done.stderr
    converted = jpegs / f"{png}.jpg"
    assert converted.read_bytes().startswith(b"\xff\xd8")
    converted.write_bytes(b"changed by hand")  # the user's now
    assert batchcap("export", run.journal, "--format", "imagefolder", "--out", jpegs, "--convert", "jpeg"
                    ).returncode == 2
    assert converted.read_bytes() == b"changed by hand"
    forced = batchcap("export", run.journal, "--format", "imagefolder", "--out", jpegs, "--convert", "jpeg",
                      "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert converted.read_bytes().startswith(b"\xff\xd8")


def test_no_command_replaces_an_output_file_it_did_not_write(captioned_run: CaptionedRun, tmp_path: Path) -> None:
    """Issue 15: a user's metadata.jsonl in the photo folder, a user's index.html or README.md in the site folder,
    a user's bench.md: each is kept, the command exits 2 before it writes anything; a rerun over batchcap's own
    outputs replaces them; --overwrite replaces the user's."""
    run = captioned_run
    own = run.images / "metadata.jsonl"  # imagefolder without --out writes metadata.jsonl at the input's root
    own.write_text('{"file_name": "mine.jpg", "text": "written by hand"}\n', encoding="utf-8")
    refused = batchcap("export", run.journal, "--format", "imagefolder")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1
    assert "--overwrite" in refused.stderr
    assert "metadata.jsonl" in refused.stderr
    assert own.read_text(encoding="utf-8") == '{"file_name": "mine.jpg", "text": "written by hand"}\n'
    assert not (run.images / ".batchcap-outputs.json").exists()

    replaced = batchcap("export", run.journal, "--format", "imagefolder", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert "written by hand" not in own.read_text(encoding="utf-8")
    again = batchcap("export", run.journal, "--format", "imagefolder")  # its own file now: replaced without a word
    assert again.returncode == 0, again.stderr
    with own.open("a", encoding="utf-8") as f:  # the user edits batchcap's file: it is theirs now
        f.write('{"file_name": "extra.jpg", "text": "added by hand"}\n')
    assert batchcap("export", run.journal, "--format", "imagefolder").returncode == 2
    assert own.read_text(encoding="utf-8").endswith('"added by hand"}\n')

    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "metadata.csv").write_text("a,b\n", encoding="utf-8")
    assert batchcap("export", run.journal, "--format", "csv", "--out", tables).returncode == 2
    assert (tables / "metadata.csv").read_text(encoding="utf-8") == "a,b\n"

    site = tmp_path / "site"
    site.mkdir()
    (site / "README.md").write_text("# my notes\n", encoding="utf-8")
    refused = batchcap("report", run.journal, "--out", site)
    assert refused.returncode == 2, refused.stderr
    assert (site / "README.md").read_text(encoding="utf-8") == "# my notes\n"
    assert not (site / "index.html").exists()
    assert batchcap("report", run.journal, "--out", site, "--overwrite").returncode == 0
    assert batchcap("report", run.journal, "--out", site).returncode == 0  # a rebuild of its own site

    bench_out = tmp_path / "bench"
    bench_out.mkdir()
    (bench_out / "bench.md").write_text("my own numbers\n", encoding="utf-8")
    url = "http://127.0.0.1:9"  # refused before any request: nothing listens there and nothing is sent
    refused = batchcap("bench", run.images, "--target", f"mine={url}", "--out", bench_out)
    assert refused.returncode == 2, refused.stderr
    assert "bench.md" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (bench_out / "bench.md").read_text(encoding="utf-8") == "my own numbers\n"
