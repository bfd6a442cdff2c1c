"""File names from real folders: undecodable bytes, newlines, 250-byte names, unreadable folders. Each
image is accounted for: a caption or an error record that names it, and a rerun does not redo either."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import orjson
from conftest import MODEL, EmulatorFactory

from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings
from batchcap.run import run
from batchcap.source.samples import generate


def odd_folder(tmp_path: Path) -> tuple[Path, int]:
    src = tmp_path / "src"
    generate(src, 4, seed=1)
    jpgs = sorted(src.rglob("*.jpg")) + sorted(src.rglob("*.png"))
    root = tmp_path / "odd"
    root.mkdir()
    raw = os.fsencode(root)
    names = [b"caf\xe9.jpg", b"two\xff\xfe.png"]  # Latin-1 and garbage bytes: not UTF-8
    for name, image in zip(names, jpgs, strict=False):
        with open(raw + b"/" + name, "wb") as f:
            f.write(image.read_bytes())
    shutil.copy(jpgs[2], root / "new\nline.jpg")
    shutil.copy(jpgs[3], root / ("l" * 246 + ".jpg"))  # 250 bytes: the usual NAME_MAX is 255
    os.mkdir(raw + b"/bad\xffdir")
    with open(raw + b"/bad\xffdir/inside.jpg", "wb") as f:
        f.write(jpgs[0].read_bytes())
    return root, 2


async def test_every_odd_name_is_accounted_for(emulator: EmulatorFactory, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    root, undecodable = odd_folder(tmp_path)
    out = tmp_path / "r.jsonl"
    cfg = RunConfig.build(input_dir=root, out=out, model=MODEL, api_base=server.url + "/hf-inference", rate=None).validate()
    with anyio.fail_after(20):
        stats = await run(cfg)
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by_path = {r["path"]: r for r in records}
    assert by_path["new\nline.jpg"]["status"] == "ok"
    assert by_path["l" * 246 + ".jpg"]["status"] == "ok"
    assert by_path["caf\\xe9.jpg"]["status"] == "error"
    assert "not valid UTF-8" in by_path["caf\\xe9.jpg"]["error"]["message"]
    assert by_path["two\\xff\\xfe.png"]["status"] == "error"
    assert by_path["bad\\xffdir/"]["error"]["message"].startswith("folder name is not valid UTF-8")
    assert (stats.ok, stats.failed, stats.scan_problem_files, stats.scan_problem_folders) == (2, 3, undecodable, 1)
    with anyio.fail_after(20):
        again = await run(cfg)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 5)  # nothing redone, nothing lost
    assert len(out.read_bytes().splitlines()) == 5
