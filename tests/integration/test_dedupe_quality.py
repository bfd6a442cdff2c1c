"""Issue 12 in a real run: copies captioned once, bad captions retried, flagged or refused, boilerplate found."""

from __future__ import annotations

import hashlib
import random
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image, ImageFilter

from batchcap import RunConfig, run
from batchcap.emulator import EmulatorSettings, RunningEmulator, caption_for
from batchcap.flow.retry import RetryPolicy
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = "Salesforce/blip-image-captioning-base"


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def cfg_for(server: RunningEmulator, folder: Path, out: Path, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {"input_dir": folder, "out": out, "model": MODEL, "api_base": f"{server.url}/hf-inference",
                            "concurrency": 8, "rate": None, "burst": 8, "timeout": 5.0}
    base.update(kw)
    return RunConfig.build(**base).validate()


@pytest.fixture
def with_copies(tmp_path: Path) -> Path:
    """200 distinct images in camera/, byte-identical copies of the first 100 in backup/."""
    folder = tmp_path / "photos"
    paths = generate(folder / "camera", 200, seed=12)
    (folder / "backup").mkdir()
    for i, p in enumerate(paths[:100]):
        shutil.copyfile(p, folder / "backup" / f"copy_{i:03d}{p.suffix}")
    return folder


def by_content(folder: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            groups[hashlib.sha256(p.read_bytes()).hexdigest()].append(p.relative_to(folder).as_posix())
    return groups


async def test_copies_are_sent_once_and_each_gets_an_ok_line(
    emulator: Emulator, with_copies: Path, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(60):
        stats = await run(cfg_for(server, with_copies, out))
    assert server.log.count() == 200
    recs = {r["path"]: r for r in lines(out)}
    assert len(recs) == 300
    assert all(r["status"] == "ok" for r in recs.values())
    assert stats.duplicates == 100
    for paths in by_content(with_copies).values():
        want = caption_for((with_copies / paths[0]).read_bytes())
        assert all(recs[p]["caption"] == want for p in paths)
        sent = [p for p in paths if "duplicate_of" not in recs[p]]
        assert len(sent) == 1  # exactly one of each content was sent
        for p in paths:
            if p != sent[0]:
                assert recs[p]["duplicate_of"] == sent[0]
                assert recs[p]["attempts"] == 0
                assert recs[p]["bytes_sent"] == 0


async def test_no_dedupe_sends_every_file(emulator: Emulator, with_copies: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(60):
        await run(cfg_for(server, with_copies, out, dedupe="off"))
    assert server.log.count() == 300
    assert not any("duplicate_of" in r for r in lines(out))


async def test_resume_and_retry_after_failed_originals(
    emulator: Emulator, with_copies: Path, tmp_path: Path
) -> None:
    """Originals that fail (retryable 5xx, no retries) give their copies the same error; a rerun finishes all."""
    server = await emulator(EmulatorSettings(fail_rate=0.3, seed=4))
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(60):
        first = await run(cfg_for(server, with_copies, out), policy=RetryPolicy.immediate(attempts=1))
    assert first.failed > 0
    recs = {r["path"]: r for r in lines(out)}
    for rec in recs.values():
        if rec.get("duplicate_of"):
            assert rec["status"] == recs[rec["duplicate_of"]]["status"]
    healthy = await emulator(EmulatorSettings())
    # Another server is another target (its URL is in every answer's fingerprint): keep the first one's answers.
    with anyio.fail_after(60):
        again = await run(cfg_for(healthy, with_copies, out, keep_stale=True))
    assert again.failed == 0
    final = {}
    for r in lines(out):
        if r["status"] == "ok" or r["path"] not in final:
            final[r["path"]] = r
    assert len(final) == 300
    assert all(r["status"] == "ok" for r in final.values())
    for paths in by_content(with_copies).values():
        want = caption_for((with_copies / paths[0]).read_bytes())
        assert all(final[p]["caption"] == want for p in paths)
    # the healthy server was asked at most once per content that had no caption yet
    assert healthy.log.count() <= first.failed


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = random.Random(seed)
    grid = Image.new("RGB", (6, 6))
    grid.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(36)])
    return grid.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))


async def test_dedupe_near_sends_resized_copies_once(emulator: Emulator, tmp_path: Path) -> None:
    folder = tmp_path / "near"
    folder.mkdir()
    for seed in range(8):
        im = photo(seed)
        im.save(folder / f"a{seed}.jpg", quality=90)
        if seed < 4:
            im.resize((160, 120)).save(folder / f"b{seed}_small.jpg", quality=70)
    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        await run(cfg_for(server, folder, out, dedupe="near"))
    assert server.log.count() == 8
    recs = {r["path"]: r for r in lines(out)}
    for seed in range(4):
        assert recs[f"b{seed}_small.jpg"]["duplicate_of"] == f"a{seed}.jpg"
        assert recs[f"b{seed}_small.jpg"]["caption"] == recs[f"a{seed}.jpg"]["caption"]


# -- caption quality ----------------------------------------------------------------------------------------

BAD = [
    ("", "stop"),
    ("I'm sorry, I can't help with that.", "stop"),
    ("A photo of a red", "length"),
]


class Chat:
    """An OpenAI-compatible server whose first answer for some images is bad (empty, refusal, cut off)."""

    def __init__(self, *, boilerplate: bool = False) -> None:
        self.seen: Counter[str] = Counter()
        self.requests = 0
        self.temperatures: list[tuple[int, float]] = []  # (attempt number for that image, temperature)
        self.boilerplate = boilerplate

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        url = body["messages"][0]["content"][1]["image_url"]["url"]
        key = hashlib.sha256(url.encode()).hexdigest()
        self.requests += 1
        self.seen[key] += 1
        n = int(key[:8], 16)
        self.temperatures.append((self.seen[key], float(body["temperature"])))
        if self.boilerplate:
            text, reason = ("A photo." if n % 2 else f"A distinct scene number {n}."), "stop"
        elif self.seen[key] == 1 and n % 4 != 0:
            text, reason = BAD[(n // 4) % len(BAD)]
        else:
            text, reason = f"A good caption for image {key[:8]}.", "stop"
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                               "finish_reason": reason}]})


@pytest.fixture
async def chat() -> AsyncIterator[tuple[Chat, str]]:
    handler = Chat()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler.handle)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield handler, str(server.make_url("/v1"))


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    generate(folder, 60, seed=21)
    return folder


def chat_cfg(base: str, folder: Path, out: Path, **kw: Any) -> RunConfig:
    return RunConfig.build(input_dir=folder, out=out, api="openai", model="m", base_url=base, concurrency=8,
                     rate=None, burst=8, timeout=5.0, **kw).validate()


async def test_bad_first_captions_are_retried_until_good(chat: tuple[Chat, str], pictures: Path,
                                                         tmp_path: Path) -> None:
    handler, base = chat
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        stats = await run(chat_cfg(base, pictures, out))
    recs = lines(out)
    assert len(recs) == 60
    assert all(r["status"] == "ok" for r in recs)
    assert all(r["caption"].startswith("A good caption for image") for r in recs)
    assert not any("flags" in r for r in recs)
    bad_first = sum(1 for c in handler.seen.values() if c == 2)
    assert bad_first > 10
    assert stats.quality_retries == bad_first
    assert handler.requests == 60 + bad_first
    # a quality retry of a chat target is a little warmer than the first attempt
    assert {t for n, t in handler.temperatures if n == 1} == {0.0}
    second = [t for n, t in handler.temperatures if n == 2]
    assert second
    assert all(t == pytest.approx(0.3) for t in second)


async def test_no_retries_flag_keeps_the_caption_with_its_flags(chat: tuple[Chat, str], pictures: Path,
                                                                tmp_path: Path) -> None:
    handler, base = chat
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        stats = await run(chat_cfg(base, pictures, out, quality_retries=0))
    recs = lines(out)
    assert handler.requests == 60
    assert all(r["status"] == "ok" for r in recs)
    flagged = {r["path"]: r["flags"] for r in recs if "flags" in r}
    assert flagged
    assert set().union(*flagged.values()) == {"empty", "refusal", "cut_off"}
    assert sum(stats.flags.values()) == len(flagged)


async def test_no_retries_error_gives_bad_caption_records_and_exit_1(
    chat: tuple[Chat, str], pictures: Path, tmp_path: Path
) -> None:
    handler, base = chat
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "batchcap", "run", str(pictures), "--out", str(out), "--api", "openai",
            "--model", "m", "--base-url", base, "--rate", "unlimited", "--quiet",
            "--quality-retries", "0", "--on-bad-caption", "error"]
    with anyio.fail_after(60):
        proc = await anyio.run_process(argv, check=False)
    assert proc.returncode == 1, proc.stderr.decode()
    recs = lines(out)
    errors = [r for r in recs if r["status"] == "error"]
    assert len(errors) > 10
    assert handler.requests == len(recs) == 60  # no quality retries: one request per image
    assert all(r["error"]["type"] == "BadCaption" for r in errors)
    assert all(r["error"]["retryable"] is False for r in errors)
    assert all(r["flags"] for r in errors)
    assert all(r["caption"].startswith("A good caption") for r in recs if r["status"] == "ok")
    assert "BadCaption" in proc.stderr.decode()
    assert "caption quality" in proc.stderr.decode()


async def test_the_summary_names_boilerplate(pictures: Path, tmp_path: Path) -> None:
    handler = Chat(boilerplate=True)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler.handle)
    out = tmp_path / "out.jsonl"
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        argv = [sys.executable, "-m", "batchcap", "run", str(pictures), "--out", str(out), "--api", "openai",
                "--model", "m", "--base-url", str(server.make_url("/v1")), "--rate", "unlimited", "--quiet"]
        with anyio.fail_after(60):
            proc = await anyio.run_process(argv, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    same = sum(1 for r in lines(out) if r["caption"] == "A photo.")
    assert same > 10
    assert f"the same caption for {same} distinct images" in err
    assert "'A photo.'" in err
    manifest = orjson.loads((tmp_path / "out.manifest.json").read_bytes())
    assert manifest["boilerplate"][0]["images"] == same


async def test_retry_failed_retries_bad_captions(chat: tuple[Chat, str], pictures: Path, tmp_path: Path) -> None:
    handler, base = chat
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        first = await run(chat_cfg(base, pictures, out, quality_retries=0, on_bad_caption="error"))
        assert first.failed > 10
        again = await run(chat_cfg(base, pictures, out))  # BadCaption is final: skipped like any final error
        assert again.ok == again.failed == 0
        retried = await run(chat_cfg(base, pictures, out, retry_failed=True))
    assert retried.ok == first.failed
    final = {r["path"]: r for r in lines(out) if r["status"] == "ok"}
    assert len(final) == 60
    assert all(r["caption"].startswith("A good caption") for r in final.values())
    assert handler.requests == 60 + first.failed


def test_run_and_check_help_show_the_new_flags() -> None:
    import subprocess

    run_help = subprocess.run([sys.executable, "-m", "batchcap", "run", "--help"], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    for flag in ("--dedupe", "--no-dedupe", "--quality-retries", "--on-bad-caption", "--min-words", "--max-words"):
        assert flag in run_help
    check_help = subprocess.run([sys.executable, "-m", "batchcap", "check", "--help"], capture_output=True,
                                text=True, timeout=60, check=True).stdout
    for flag in ("--out", "--target", "--json", "--probe", "--price-per-hour", "--dedupe"):
        assert flag in check_help
