"""``batchcap run --sidecar`` on a folder a person has worked in: hand-written captions and shared names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import orjson
from conftest import MODEL, EmulatorFactory

from batchcap.emulator import EmulatorSettings
from batchcap.source.samples import generate


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = "/nonexistent-batchcap-test"
    return env


async def test_hand_written_sidecars_survive_and_clashes_are_named(emulator: EmulatorFactory, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(latency=0))
    photos = tmp_path / "photos"
    generate(photos, 6, seed=2)
    images = sorted(p for p in photos.rglob("*") if p.is_file())
    hand = {images[0].with_suffix(".txt"): "written by hand, keep me\n", photos / "notes.txt": "not a caption\n"}
    clash = images[1].with_suffix(".webp")  # a second image that maps to images[1]'s sidecar
    clash.write_bytes(images[1].read_bytes())
    for path, text in hand.items():
        path.write_text(text)

    async def run(*extra: str) -> tuple[int, str]:
        argv = [sys.executable, "-m", "batchcap", "run", str(photos), "--model", MODEL, "--sidecar", "--no-dedupe",
                "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited", "-q", *extra]
        with anyio.fail_after(60):
            done = await anyio.run_process(argv, env=_env(), check=False)
        return done.returncode, done.stderr.decode()

    code, err = await run("--out", str(tmp_path / "one.jsonl"))
    assert code == 0, err
    for path, text in hand.items():
        assert path.read_text() == text  # every hand-written file unchanged
    records = {r["path"]: r for r in map(orjson.loads, (tmp_path / "one.jsonl").read_bytes().splitlines())}
    owner, other = sorted([images[1], clash], key=lambda p: p.name)
    sidecar = images[1].with_suffix(".txt")
    assert sidecar.read_text() == records[owner.relative_to(photos).as_posix()]["caption"] + "\n"
    rel = other.relative_to(photos).as_posix()
    assert f"no sidecar for {rel}: {sidecar.relative_to(photos).as_posix()} is" in err
    assert "kept 1 existing sidecar (e.g." in err
    assert records[rel]["caption"]  # its caption is in the JSONL, as the summary says
    manifest = orjson.loads((tmp_path / "one.manifest.json").read_bytes())
    assert manifest["invocations"][-1]["sidecars"]["clashes"] == 1

    code, err = await run("--out", str(tmp_path / "two.jsonl"))  # a second run, another journal
    assert code == 0, err
    for path, text in hand.items():
        assert path.read_text() == text
    assert sidecar.read_text() == records[owner.relative_to(photos).as_posix()]["caption"] + "\n"

    code, err = await run("--out", str(tmp_path / "three.jsonl"), "--sidecar-mode", "overwrite")
    assert code == 0, err
    assert images[0].with_suffix(".txt").read_text() != hand[images[0].with_suffix(".txt")]  # asked for
    assert (photos / "notes.txt").read_text() == "not a caption\n"  # no image of that name: never touched
