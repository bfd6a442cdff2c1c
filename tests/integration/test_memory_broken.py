"""A folder full of broken photos (a copy cut short, a dying card): memory stays flat whatever their number."""

from __future__ import annotations

import gc
import os
import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
import pytest
from conftest import MODEL, EmulatorFactory
from corpus import phone_jpeg

from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings
from batchcap.errors import InputError
from batchcap.models import LoadedImage
from batchcap.run import run

PEAK = """
import resource, sys
from batchcap.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.__stdout__)
"""


def broken_folder(root: Path, base: Path, count: int) -> Path:
    """``count`` names for one broken 1 MB photo (hard links: the run reads each as its own file)."""
    root.mkdir()
    for i in range(count):
        os.link(base, root / f"IMG_{i:04d}.jpg")
    return root


def cut_short() -> bytes:
    """A JPEG that stops before its end-of-image marker: refused by the reader's structure check."""
    noise = random.Random(7).randbytes(1_000_000).replace(b"\xff\xd9", b"\xff\x00")
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + noise


def undecodable() -> bytes:
    """A whole 3 MP phone JPEG whose Huffman table marker is broken: it passes the reader, the decoder refuses it."""
    data = bytearray(phone_jpeg(3, size=(2016, 1512)))
    data[data.find(b"\xff\xc4") + 1] = 0x01
    return bytes(data)


async def peak_mb(folder: Path, out: Path, url: str) -> float:
    argv = [sys.executable, "-c", PEAK, "run", str(folder), "--out", str(out), "--model", MODEL,
            "--api-base", f"{url}/hf-inference", "--rate", "unlimited", "--quiet", "--no-dedupe"]
    with anyio.fail_after(120):
        done = await anyio.run_process(argv, check=False)
    return int(done.stdout.decode().split()[-1]) / 1024


async def test_files_cut_short_do_not_grow_the_memory_with_their_number(emulator: EmulatorFactory,
                                                                       tmp_path: Path) -> None:
    """Each unreadable file's error kept its traceback, and with it the reader's frame and its whole read batch
    (64 files' bytes) until a full garbage collection: 200 files cut short peaked at ~250 MB, 600 at ~650 MB.
    Errors are kept without their tracebacks now: the peak stays where the run's bounded buffers put it."""
    server = await emulator(EmulatorSettings())
    base = tmp_path / "broken.jpg"
    base.write_bytes(cut_short())
    few = await peak_mb(broken_folder(tmp_path / "few", base, 200), tmp_path / "few.jsonl", server.url)
    out = tmp_path / "many.jsonl"
    many = await peak_mb(broken_folder(tmp_path / "many", base, 600), out, server.url)
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(recs) == 600
    assert {r["error"]["message"] for r in recs} == {"truncated JPEG (no end-of-image marker)"}
    assert many - few < 25, (few, many)


@pytest.mark.parametrize("make", [cut_short, undecodable])
async def test_nothing_of_a_refused_file_outlives_its_error_record(emulator: EmulatorFactory, tmp_path: Path,
                                                                   make: Callable[[], bytes]) -> None:
    """Without the cycle collector (it runs rarely in a big run): after the run no image, error or traceback
    of the 100 refused files is left (there were 400 images and their bytes, for 200 files)."""
    server = await emulator(EmulatorSettings())
    base = tmp_path / "broken.jpg"
    base.write_bytes(make())
    folder = broken_folder(tmp_path / "img", base, 100)
    cfg = RunConfig.build(input_dir=folder, out=tmp_path / "r.jsonl", model=MODEL,
                          api_base=f"{server.url}/hf-inference", rate=None, dedupe="off").validate()
    gc.collect()
    gc.disable()
    try:
        kinds = (LoadedImage, InputError)
        others = [o for o in gc.get_objects() if isinstance(o, kinds)]  # other tests' (held, so no id is reused)
        known = {id(o) for o in others}
        with anyio.fail_after(60):
            stats = await run(cfg)
        left = Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds) and id(o) not in known)
    finally:
        gc.enable()
    assert (stats.ok, stats.failed) == (0, 100)
    assert not left, left
