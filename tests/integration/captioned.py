"""A real captioned run (sample images -> emulator -> journal + manifest) for the export and report tests.

A plain module, not a conftest: `from conftest import ...` in other tests must find tests/conftest.py.
Each test module wraps ``make_run`` in its own ``captioned_run`` fixture.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anyio

from batchcap import run
from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, caption_for, start_emulator
from batchcap.source.samples import generate

MODEL = "Salesforce/blip-image-captioning-base"


@dataclass(frozen=True, slots=True)
class CaptionedRun:
    images: Path  #: the input folder
    journal: Path  #: results.jsonl, with results.manifest.json beside it
    captions: dict[str, str]  #: path -> the caption the emulator gives that very image
    broken: str  #: the path of the one file that got an error record


async def _caption(images: Path, journal: Path) -> None:
    server = await start_emulator(EmulatorSettings(latency=0))
    try:
        cfg = RunConfig.build(input_dir=images, out=journal, model=MODEL, api_base=f"{server.url}/hf-inference",
                        concurrency=4, rate=None, burst=4, timeout=5.0).validate()
        with anyio.fail_after(30):
            await run(cfg)
    finally:
        await server.close()


def make_run(tmp_path: Path, count: int = 12) -> CaptionedRun:
    """``count`` real images and one broken file, captioned by the real pipeline against the emulator."""
    images = tmp_path / "images"
    generate(images, count, seed=5)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    journal = tmp_path / "run" / "results.jsonl"
    journal.parent.mkdir()
    # A thread of its own: a test may already run an event loop here (Playwright's sync API does).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, _caption, images, journal).result()
    captions = {
        p.relative_to(images).as_posix(): caption_for(p.read_bytes())
        for p in images.rglob("*")
        if p.is_file() and p.name != "broken.jpg"
    }
    return CaptionedRun(images, journal, captions, "broken.jpg")
