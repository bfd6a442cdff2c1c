"""The Space adapter against a real ``gradio`` app on loopback (issue 20's "How we will know").

The app (``gradio_app.py``, a subprocess started once for this module) runs one call at a time, 0.2 s each,
with room for 4 waiting; its second endpoint refuses its first 3 calls with ZeroGPU's quota text. The wall-time
goal (within 1.3x of 60 x 0.2 s) is measured by ``benchmarks/bench_space.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchcap.config import RunConfig
from batchcap.errors import UsageError
from batchcap.run import run
from batchcap.source.samples import generate

pytest.importorskip("gradio", reason="the real-app tests need the dev extra: pip install -e '.[dev]'")
pytestmark = pytest.mark.gradio

APP = Path(__file__).with_name("gradio_app.py")


class App:
    def __init__(self, url: str, counts: Path) -> None:
        self.url = url
        self.counts_file = counts

    def counts(self) -> dict[str, float]:
        return json.loads(self.counts_file.read_text()) if self.counts_file.exists() else {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gradio_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    folder = tmp_path_factory.mktemp("gradio")
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(folder / "tmp"),
           "HF_HUB_OFFLINE": "1", "GRADIO_HEARTBEAT_INTERVAL": "0.5"}
    log = (folder / "app.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(APP), str(port), str(folder / "counts.json")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/config", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gradio app did not start: {(folder / 'app.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield App(url, folder / "counts.json")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def config(images: Path, out: Path, app: App, **kw: object) -> RunConfig:
    return RunConfig.build(input_dir=images, out=out, space=app.url, rate=None, timeout=30.0, **kw).validate()


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_bytes().splitlines()]


async def test_sixty_images_one_call_each_all_ok(gradio_app: App, tmp_path: Path) -> None:
    generate(tmp_path / "img", 60, seed=11)
    before = gradio_app.counts().get("caption", 0)
    out = tmp_path / "out.jsonl"
    stats = await run(config(tmp_path / "img", out, gradio_app, space_api="/caption",
                             space_inputs=("prompt=Describe it.",)))
    assert stats.ok == 60
    assert stats.failed == 0
    assert gradio_app.counts()["caption"] - before == 60  # one call of the app's function per image
    lines = records(out)
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in lines)
    assert all(str(r["caption"]).startswith("a ") for r in lines)


async def test_a_full_queue_under_pressure_is_waited_out(gradio_app: App, tmp_path: Path) -> None:
    generate(tmp_path / "img", 16, seed=12)
    before = gradio_app.counts().get("caption", 0)
    out = tmp_path / "out.jsonl"
    # 12 in flight against room for 1 running + 4 waiting: Gradio answers 503 "Queue is full" to the rest
    stats = await run(config(tmp_path / "img", out, gradio_app, space_api="/caption", concurrency="fixed:12",
                             retries=0))
    assert stats.ok == 16
    assert stats.failed == 0
    assert stats.throttled > 0  # the 503s were seen, and waited out without spending a retry
    assert gradio_app.counts()["caption"] - before == 16


async def test_a_quota_refusal_is_waited_out_and_those_images_end_ok(gradio_app: App, tmp_path: Path) -> None:
    generate(tmp_path / "img", 3, seed=13)
    out = tmp_path / "out.jsonl"
    stats = await run(config(tmp_path / "img", out, gradio_app, space_api="/quota_caption", concurrency="fixed:3",
                             retries=0))
    assert gradio_app.counts()["quota_refused"] == 3
    assert stats.ok == 3
    assert stats.failed == 0
    assert all(r["status"] == "ok" and r["attempts"] == 2 for r in records(out))


async def test_two_image_endpoints_need_space_api(gradio_app: App, tmp_path: Path) -> None:
    generate(tmp_path / "img", 1, seed=14)
    with pytest.raises(UsageError, match=r"2 endpoints that take an image and return text \(/caption, /quota_caption\)"):
        await run(config(tmp_path / "img", tmp_path / "out.jsonl", gradio_app))
