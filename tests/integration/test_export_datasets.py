"""Issue 19: dataset exports that ``datasets`` loads and the Hub takes as they are, judged by the real readers:
``datasets.load_dataset`` (every row's image decoded by plain Pillow, no plugin registered), ``pyarrow``,
``huggingface_hub.DatasetCard`` and the ``hf`` CLI's own parser."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hubdata import HARD, hard_images, noise_jpeg, png, write_parquet, write_tars

from batchcap.cli import main as cli_main
from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, caption_for, start_emulator
from batchcap.export.card import MARKER
from batchcap.run import run

MODEL = "Salesforce/blip-image-captioning-base"
PROMPT = "Describe the photo in one sentence for a training set."


def export(*argv: str | Path) -> int:
    return cli_main(["export", *(str(a) for a in argv)])


async def _caption(source: Path | str, journal: Path, **kw: Any) -> None:
    server = await start_emulator(EmulatorSettings(latency=0))
    try:
        base: dict[str, Any] = {"model": MODEL, "api_base": f"{server.url}/hf-inference"}
        if kw.pop("openai", False):
            base = {"api": "openai", "model": MODEL, "base_url": f"{server.url}/v1", "prompt": PROMPT}
        cfg = RunConfig.build(input_dir=source, out=journal, concurrency=4, rate=None, timeout=10.0, **base,
                              **kw).validate()
        with anyio.fail_after(60):
            await run(cfg)
    finally:
        await server.close()


def caption(source: Path | str, journal: Path, **kw: Any) -> None:
    journal.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, lambda: _caption(source, journal, **kw)).result()


def records(journal: Path) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in map(orjson.loads, journal.read_bytes().splitlines())}


@pytest.fixture(scope="module")
def hard_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """HEIC, AVIF, 16-bit PNG, RGBA, CMYK and a phone JPEG, captioned through the chat route (with a prompt)."""
    root = tmp_path_factory.mktemp("hard")
    images = root / "images"
    hard_images(images / "sub")
    journal = root / "run" / "results.jsonl"
    caption(images, journal, openai=True)
    assert all(r["status"] == "ok" for r in records(journal).values())
    return images, journal


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path / "hf-cache"


def load_and_decode(kind: str, folder: Path, cache: Path) -> list[dict[str, Any]]:
    """``load_dataset`` in a fresh interpreter (no pillow-heif registered, as in a trainer), every image decoded;
    each row as {name, text, mode, size, format}."""
    script = f"""
import sys, orjson, datasets, PIL.Image
assert "pillow_heif" not in sys.modules
ds = datasets.load_dataset({kind!r}, data_dir={str(folder)!r}, split="train", cache_dir={str(cache)!r})
rows = []
for row in ds:
    im = row["image"]
    im.load()
    rows.append({{"name": row.get("file_name"), "text": row["text"], "mode": im.mode, "size": list(im.size),
                  "format": im.format}})
assert "pillow_heif" not in sys.modules
sys.stdout.write(orjson.dumps(rows).decode())
"""
    env = {**os.environ}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return list(orjson.loads(done.stdout))


def test_parquet_export_of_heic_avif_16bit_loads_and_every_image_decodes(
    hard_run: tuple[Path, Path], tmp_path: Path, offline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, journal = hard_run
    out = tmp_path / "ds"
    assert export(journal, "--format", "parquet", "--out", out) == 0
    err = capsys.readouterr().err
    assert "2 images converted so that every reader decodes them" in err  # the HEIC and the AVIF
    assert "publish it with: hf upload" in err
    rows = load_and_decode("parquet", out, offline)
    assert len(rows) == len(HARD)
    caps = {k: r["caption"] for k, r in records(journal).items()}
    by_name = {r["name"]: r for r in rows}
    assert by_name["sub/iphone.heic.jpg"]["format"] == "JPEG"
    assert by_name["sub/photo.avif.jpg"]["format"] == "JPEG"
    assert by_name["sub/gray16.png"]["mode"] == "I;16"  # decodes as it is: not converted
    assert by_name["sub/rgba.png"]["mode"] == "RGBA"
    for name, row in by_name.items():
        original = name.removesuffix(".jpg") if name.endswith((".heic.jpg", ".avif.jpg")) else name
        assert row["text"] == caps[original]
    assert by_name["sub/iphone.heic.jpg"]["size"] == [240, 320]  # full size, upright


def test_imagefolder_export_of_heic_avif_16bit_loads_and_every_image_decodes(
    hard_run: tuple[Path, Path], tmp_path: Path, offline: Path
) -> None:
    images, journal = hard_run
    out = tmp_path / "folder"
    assert export(journal, "--format", "imagefolder", "--out", out) == 0
    rows = load_and_decode("imagefolder", out, offline)
    assert len(rows) == len(HARD)
    assert all(r["size"][0] > 0 for r in rows)  # every one decoded (load() above), none needed a plugin
    meta = [orjson.loads(line) for line in (out / "metadata.jsonl").read_bytes().splitlines()]
    names = {m["file_name"] for m in meta}
    assert {"sub/iphone.heic.jpg", "sub/photo.avif.jpg", "sub/gray16.png"} <= names
    assert not (out / "sub" / "iphone.heic").exists()  # the undecodable original is not shipped
    assert os.stat(out / "sub" / "cmyk.jpg").st_ino == os.stat(images / "sub" / "cmyk.jpg").st_ino  # linked


def test_convert_keep_ships_them_as_they_are_and_says_so(
    hard_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, journal = hard_run
    out = tmp_path / "kept"
    assert export(journal, "--format", "imagefolder", "--out", out, "--convert", "keep") == 0
    assert "2 images kept as they are that datasets/Pillow cannot decode without a plugin" in capsys.readouterr().err
    assert (out / "sub" / "iphone.heic").exists()
    assert export(journal, "--format", "parquet", "--out", tmp_path / "png", "--convert", "png") == 0
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(tmp_path / "png" / "data").to_pydict()
    assert all(im["bytes"].startswith(b"\x89PNG") for im in table["image"])
    assert "sub/phone_portrait.jpg.png" in table["file_name"]


def test_dataset_card_parses_and_names_the_model_and_the_prompt(hard_run: tuple[Path, Path], tmp_path: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    _, journal = hard_run
    out = tmp_path / "ds"
    assert export(journal, "--format", "parquet", "--out", out, "--repo", "acme/captioned") == 0
    card = hub.DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["image-to-text"]
    assert data["size_categories"] == ["n<1K"]
    assert data["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": ["data/train-*.parquet"]}]}]
    prov = data["batchcap"]
    assert prov["prompts"] == [PROMPT]
    assert [m["target"] for m in prov["models"]] == [f"openai:{MODEL}@" + m["target"].split("@")[1]
                                                     for m in prov["models"]]
    assert MODEL in prov["models"][0]["target"]
    assert prov["models"][0]["captions"] == len(HARD)
    assert prov["counts"]["rows"] == len(HARD)
    assert prov["counts"]["converted"] == {"heic": 1, "avif": 1}
    assert prov["preparation"]["max_side"] == 1024
    assert prov["source"]["kind"] == "folder"
    assert prov["batchcap_version"]["run"]
    assert PROMPT in card.text  # and the body says it to people
    assert "hf upload acme/captioned" in card.text


def test_the_printed_upload_command_is_one_the_hf_cli_accepts(
    hard_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hf CLI parses the command (offline, it stops before any request): flags and arguments as it reads them."""
    _, journal = hard_run
    assert export(journal, "--format", "parquet", "--out", tmp_path / "ds") == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "publish it with: " in x)
    argv = shlex.split(line.split("publish it with: ", 1)[1])
    assert argv[:2] == ["hf", "upload"]
    assert argv[argv.index("--exclude") + 1] == "*.batchcap-outputs.json"  # the ledger of outputs stays home
    assert (tmp_path / "ds" / "data" / ".batchcap-outputs.json").is_file()
    hf = Path(sys.executable).with_name("hf")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run([str(hf), *argv[1:]], capture_output=True, text=True, env=env, timeout=120, check=False)
    text = done.stdout + done.stderr
    assert "No such option" not in text, text[-2000:]
    assert "Usage:" not in text, text[-2000:]
    assert "offline" in text.lower(), text[-2000:]  # it got as far as wanting the network


def test_a_readme_batchcap_did_not_write_is_kept(hard_run: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _, journal = hard_run
    out = tmp_path / "ds"
    out.mkdir()
    (out / "README.md").write_text("# my own notes\n")
    assert export(journal, "--format", "imagefolder", "--out", out) == 0
    assert (out / "README.md").read_text() == "# my own notes\n"
    assert "was not written by batchcap: kept as it is" in capsys.readouterr().err
    (out / "README.md").unlink()
    assert export(journal, "--format", "imagefolder", "--out", out) == 0
    first = (out / "README.md").read_text()
    assert MARKER in first
    assert export(journal, "--format", "imagefolder", "--out", out) == 0  # its own card: rewritten
    assert MARKER in (out / "README.md").read_text()


def test_shards_are_capped_in_size_and_a_smaller_export_leaves_no_stale_shard(tmp_path: Path, offline: Path) -> None:
    images = tmp_path / "many"
    images.mkdir()
    for i in range(300):
        (images / f"{i:03d}.jpg").write_bytes(noise_jpeg(i, side=48))  # ~4 KB that no codec shrinks
    journal = tmp_path / "run" / "results.jsonl"
    caption(images, journal)
    out = tmp_path / "ds"
    assert export(journal, "--format", "parquet", "--out", out, "--shard-mb", "0.2") == 0
    shards = sorted((out / "data").glob("*.parquet"))  # and batchcap's hidden ledger, which datasets skips
    assert len(shards) >= 3
    assert [p.name for p in shards] == [f"train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_dir=str(out), split="train", cache_dir=str(offline))
    assert len(ds) == 300
    assert export(journal, "--format", "parquet", "--out", out) == 0  # one shard now: the old ones go
    assert sorted(p.name for p in (out / "data").iterdir()) == [".batchcap-outputs.json", "train-00000-of-00001.parquet"]


@pytest.mark.parametrize("kind", ["parquet", "webdataset"])
def test_a_dataset_source_exports_in_its_own_order_without_the_original_folder(
    tmp_path: Path, offline: Path, kind: str
) -> None:
    """Captioned straight from parquet (or tars), exported as parquet: the images come out of the source."""
    pixels = [png(i) for i in range(50)]
    src = tmp_path / "src"
    if kind == "parquet":
        write_parquet(src, pixels, 2)
    else:
        write_tars(src, pixels, 2)
    journal = tmp_path / "run" / "results.jsonl"
    caption(src, journal)
    out = tmp_path / "ds"
    assert export(journal, "--format", "parquet", "--out", out) == 0
    assert export(journal, "--format", "imagefolder", "--out", tmp_path / "folder") == 0
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_dir=str(out), split="train", cache_dir=str(offline))
    ds = ds.cast_column("image", datasets.Image(decode=False))
    assert [caption_for(r["image"]["bytes"]) for r in ds] == [r["text"] for r in ds]
    assert [r["image"]["bytes"] for r in ds] == pixels  # the source's own order, the source's own bytes
    folder = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "folder"), split="train",
                                   cache_dir=str(offline))
    assert len(folder) == 50
    card = (out / "README.md").read_text()
    assert f"({kind})" in card
    buf = io.BytesIO()
    folder[0]["image"].save(buf, "PNG")  # decodes
