"""``batchcap export``: every format from a real run's journal, read back by the tools that consume it."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from captioned import CaptionedRun, make_run

from batchcap.cli import main as cli_main
from batchcap.emulator import caption_for
from batchcap.journal import encode_record
from batchcap.models import ErrorInfo, Record


def export(*argv: str | Path) -> int:
    return cli_main(["export", *(str(a) for a in argv)])


def append(journal: Path, *records: Record) -> None:
    with open(journal, "ab") as f:
        f.writelines(encode_record(r) for r in records)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def captioned_run(tmp_path: Path) -> CaptionedRun:
    """12 images and a broken file, captioned by the real pipeline against the emulator."""
    return make_run(tmp_path)


def test_imagefolder_loads_in_datasets_one_row_per_ok_image_with_its_own_caption(
    captioned_run: CaptionedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    datasets = pytest.importorskip("datasets")
    run = captioned_run
    first = min(run.captions)
    # A rerun appended more lines: an error after the ok must not hide it, and the latest ok wins.
    append(run.journal, Record(first, "error", error=ErrorInfo("ServerError", "503", 503, True), target="t"))
    out = tmp_path / "trainset"
    assert export(run.journal, "--format", "imagefolder", "--out", out) == 0
    assert "1 image with an error record left out" in capsys.readouterr().err
    for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    ds = ds.cast_column("image", datasets.Image(decode=False))
    assert len(ds) == len(run.captions)
    for row in ds:
        data = row["image"]["bytes"] or Path(row["image"]["path"]).read_bytes()
        assert row["text"] == caption_for(data)  # the caption of that very image, not a neighbour's
    some = next(p for p in run.captions)
    assert os.stat(out / some).st_ino == os.stat(run.images / some).st_ino  # hard-linked, not re-encoded
    assert not (out / run.broken).exists()


def test_imagefolder_is_idempotent_and_defaults_to_the_input_root(captioned_run: CaptionedRun, tmp_path: Path) -> None:
    run = captioned_run
    out = tmp_path / "ds"
    assert export(run.journal, "--format", "imagefolder", "--out", out, "--text-column", "caption") == 0
    before = (out / "metadata.jsonl").read_bytes()
    assert export(run.journal, "--format", "imagefolder", "--out", out, "--text-column", "caption") == 0
    assert (out / "metadata.jsonl").read_bytes() == before
    assert {r["file_name"]: r["caption"] for r in jsonl(out / "metadata.jsonl")} == run.captions
    assert not list(out.rglob(".*.tmp"))
    # No --out: metadata.jsonl at the input folder's root (found through the run manifest).
    assert export(run.journal, "--format", "imagefolder") == 0
    assert {r["file_name"]: r["text"] for r in jsonl(run.images / "metadata.jsonl")} == run.captions


def test_kohya_sidecars_hold_each_caption_and_an_existing_one_is_kept(captioned_run: CaptionedRun) -> None:
    run = captioned_run
    names = sorted(run.captions)
    mine = run.images / Path(names[0]).with_suffix(".txt")
    mine.write_text("my own hand-written tags", encoding="utf-8")
    assert export(run.journal, "--format", "kohya") == 0
    assert mine.read_text(encoding="utf-8") == "my own hand-written tags"
    for name in names[1:]:
        assert (run.images / Path(name).with_suffix(".txt")).read_text(encoding="utf-8") == run.captions[name]
    assert not (run.images / "broken.txt").exists()
    # append adds the caption once, however often it runs; overwrite replaces; --ext picks the name.
    for _ in range(2):
        assert export(run.journal, "--format", "kohya", "--mode", "append") == 0
    assert mine.read_text(encoding="utf-8") == "my own hand-written tags, " + run.captions[names[0]]
    assert export(run.journal, "--format", "kohya", "--mode", "prepend", "--ext", ".caption") == 0
    assert mine.with_suffix(".caption").read_text(encoding="utf-8") == run.captions[names[0]]
    assert export(run.journal, "--format", "kohya", "--mode", "overwrite") == 0
    assert mine.read_text(encoding="utf-8") == run.captions[names[0]]


HARD = ['a, "quoted" caption', "two\nlines\r\nand a CR", "", "plain", "emoji 🐱 and \u2028 and ,,,"]


def test_csv_round_trips_commas_quotes_and_newlines(tmp_path: Path) -> None:
    journal = tmp_path / "results.jsonl"
    append(journal, *(Record(f"dir/{i}, odd \"name\".jpg", "ok", caption=c) for i, c in enumerate(HARD)))
    assert export(journal, "--format", "csv") == 0  # no input folder needed for a table
    raw = (tmp_path / "results.csv").read_bytes()
    assert raw.startswith(b"file_name,text\r\n")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert rows[0] == ["file_name", "text"]
    assert rows[1:] == sorted([f"dir/{i}, odd \"name\".jpg", c] for i, c in enumerate(HARD))


def test_parquet_and_openai_batch(captioned_run: CaptionedRun, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    run = captioned_run
    out = tmp_path / "tables"
    assert export(run.journal, "--format", "parquet", "--out", out) == 0
    table = pq.read_table(out / "data").to_pydict()
    assert dict(zip(table["file_name"], table["text"], strict=True)) == run.captions
    assert all(caption_for(im["bytes"]) == text for im, text in zip(table["image"], table["text"], strict=True))
    assert export(run.journal, "--format", "openai-batch", "--out", out) == 0
    lines = jsonl(out / "batch_output.jsonl")
    assert {ln["custom_id"]: ln["response"]["body"]["choices"][0]["message"]["content"] for ln in lines} == run.captions
    assert all(ln["error"] is None and ln["response"]["status_code"] == 200 for ln in lines)
    assert all(ln["id"].startswith("batch_req_") for ln in lines)
    [err] = jsonl(out / "batch_errors.jsonl")
    assert err["custom_id"] == run.broken
    assert err["response"] is None
    assert err["error"]["code"] == "InputError"


def test_skip_flagged_leaves_flagged_records_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "results.jsonl"
    append(journal, Record("a.jpg", "ok", caption="fine"), Record("b.jpg", "ok", caption="an image of an image"))
    with open(journal, "ab") as f:  # a quality check (another tool) added flags to b's latest record
        f.write(orjson.dumps({"path": "b.jpg", "status": "ok", "caption": "an image of an image",
                              "flags": ["boilerplate"]}) + b"\n")
    assert export(journal, "--format", "csv", "--skip-flagged") == 0
    assert (tmp_path / "results.csv").read_bytes() == b"file_name,text\r\na.jpg,fine\r\n"
    assert "1 flagged image left out" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["imagefolder", "kohya", "csv"])
def test_paths_that_leave_the_folder_are_refused(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "in"
    (images / "sub").mkdir(parents=True)
    (images / "sub" / "ok.jpg").write_bytes(b"\xff\xd8 image bytes \xff\xd9")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "x.jpg").write_bytes(b"outside")
    os.symlink(tmp_path / "etc", images / "link")  # a folder link leading out of the input folder
    journal = tmp_path / "results.jsonl"
    evil = ["../etc/x.jpg", "../../etc/x.jpg", "/etc/passwd", str(tmp_path / "etc" / "x.jpg"),
            "sub/../../etc/x.jpg", "a\x00b.jpg", "..\\etc\\x.jpg", "C:/x.jpg"]
    append(journal, Record("sub/ok.jpg", "ok", caption="fine"),
           *(Record(p, "ok", caption="pwned") for p in evil), Record("link/x.jpg", "ok", caption="pwned"))
    before = sorted(p.name for p in (tmp_path / "etc").iterdir())
    out = tmp_path / "out"
    code = export(journal, "--format", fmt, "--out", out, "--images", images)
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == before
    if fmt == "csv":  # a table only names files: the link's path is a plain relative name there
        assert f"{len(evil)} paths refused" in err
        rows = list(csv.reader(io.StringIO((out / "metadata.csv").read_text("utf-8"), newline="")))
        assert [r[0] for r in rows[1:]] == ["link/x.jpg", "sub/ok.jpg"]
        return
    assert f"{len(evil) + 1} paths refused" in err  # the folder link is caught when the file is touched
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "results.jsonl"]
    assert not [p for p in written if b"pwned" in p.read_bytes()]
    assert (out / "sub" / "ok.jpg").read_bytes() == (images / "sub" / "ok.jpg").read_bytes()


def test_usage_and_unreadable_input_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "results.jsonl"
    append(journal, Record("a.jpg", "ok", caption="x"))
    assert export(journal, "--format", "csv", "--mode", "overwrite") == 2
    assert export(journal, "--format", "kohya", "--ext", "txt") == 2
    assert export(journal, "--format", "kohya") == 2  # no manifest beside it, no --images
    assert "pass --images INPUT" in capsys.readouterr().err
    assert export(tmp_path / "missing.jsonl", "--format", "csv") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("batchcap export: error: cannot read")
    (tmp_path / "junk.jsonl").write_bytes(b'{"path":"a.jpg","status":"ok","caption":"x"}\nnot json\n')
    assert export(tmp_path / "junk.jsonl", "--format", "csv") == 1
    assert "1 line skipped: not a batchcap record" in capsys.readouterr().err
