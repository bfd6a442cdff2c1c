"""One spine: ``run``, ``bench`` and ``check`` turn a file into the bytes sent through the same code.

A server that decodes what it gets (the emulator keeps, per request, the decoded size, orientation, EXIF/GPS
and the SHA-256 of the image bytes) judges both: the same bodies for the same image and settings, upright,
<= 1024 px, no GPS, never a 413 from the chat route's 2 MB limit (TGI's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import orjson
import pytest
from conftest import MODEL, EmulatorFactory

from batchcap.emulator import EmulatorSettings, RunningEmulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for corpus.py

from corpus import phone_jpeg


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = "/nonexistent-batchcap-test"
    return env


async def _batchcap(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-m", "batchcap", *argv], env=_env(), cwd=cwd, check=False)
    return done.returncode, done.stderr.decode()


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 12 MP phone JPEGs (4.5 MB each: over TGI's 2 MB as they are), stored sideways, with GPS."""
    folder = tmp_path_factory.mktemp("phone")
    for i in range(3):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(phone_jpeg(i))
    return folder


def _captioned(server: RunningEmulator) -> int:
    """Caption requests the server answered (a chat target's price lookup, /v1/models, is not one)."""
    return sum(1 for e in server.log.entries if e.status == 200 and e.kind in ("chat", "serverless", "endpoint"))


def _sent(server: RunningEmulator) -> dict[str, tuple[int, int, int, bool]]:
    """digest -> (width, height, orientation, gps) of every image the server decoded."""
    return {d.digest: (d.width, d.height, d.orientation, d.gps) for d in server.log.decoded()}


async def test_bench_and_run_send_the_same_bodies(
    emulator: EmulatorFactory, phone_photos: Path, tmp_path: Path
) -> None:
    run_server = await emulator(EmulatorSettings(latency=0))
    bench_server = await emulator(EmulatorSettings(latency=0))
    code, err = await _batchcap("run", str(phone_photos), "--out", str(tmp_path / "r.jsonl"), "--api", "openai",
                                "--model", MODEL, "--base-url", f"{run_server.url}/v1", "--rate", "unlimited", "-q")
    assert code == 0, err
    code, err = await _batchcap("bench", str(phone_photos), "--target", f"vlm=openai:{MODEL}@{bench_server.url}/v1",
                                "--concurrency", "1", "--requests", "6", "--warmup", "0", "--images", "3",
                                "--cold-start-timeout", "10", "--out", str(tmp_path / "bench"))
    assert code == 0, err

    for server in (run_server, bench_server):
        assert server.log.count(413) == 0
        assert server.log.count(200) >= 3
    run_sent, bench_sent = _sent(run_server), _sent(bench_server)
    assert len(run_sent) == 3
    assert bench_sent == run_sent  # byte for byte the same images
    for width, height, orientation, gps in run_sent.values():
        assert height > width  # upright: stored landscape with orientation 6, the server sees a portrait
        assert max(width, height) <= 1024
        assert orientation == 1
        assert not gps

    doc = orjson.loads((tmp_path / "bench" / "bench.json").read_bytes())
    images = doc["images"]
    assert images["prepared"] == 3
    assert images["bytes_sent_total"] < images["bytes_total"] / 10
    assert doc["config"]["prepare"]["max_side"] == 1024
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "Sent as `batchcap run` sends them" in md


async def test_bench_takes_the_run_preparation_flags(
    emulator: EmulatorFactory, phone_photos: Path, tmp_path: Path
) -> None:
    run_server = await emulator(EmulatorSettings(latency=0))
    bench_server = await emulator(EmulatorSettings(latency=0))
    flags = ["--max-side", "512", "--jpeg-quality", "70", "--keep-metadata"]
    code, err = await _batchcap("run", str(phone_photos), "--out", str(tmp_path / "r.jsonl"), "--model", MODEL,
                                "--api-base", f"{run_server.url}/hf-inference", "--rate", "unlimited", "-q", *flags)
    assert code == 0, err
    code, err = await _batchcap("bench", str(phone_photos), "--target", f"a=hf:{MODEL}", "--api-base",
                                f"{bench_server.url}/hf-inference", "--concurrency", "1", "--requests", "3",
                                "--warmup", "0", "--images", "3", "--out", str(tmp_path / "new" / "bench"), *flags)
    assert code == 0, err
    assert (tmp_path / "new" / "bench" / "bench.json").is_file()  # --out's missing folders are made
    run_sent, bench_sent = _sent(run_server), _sent(bench_server)
    assert bench_sent == run_sent
    assert all(max(w, h) <= 512 and gps for w, h, _, gps in run_sent.values())  # --keep-metadata: GPS kept


async def test_run_out_that_cannot_be_written_stops_before_any_request(
    emulator: EmulatorFactory, phone_photos: Path, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings(latency=0))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = await _batchcap("run", str(phone_photos), "--model", MODEL, "--api-base", f"{server.url}/hf-inference",
                                "--out", str(blocker / "r.jsonl"))
    assert code == 2
    assert err.startswith("batchcap: error: --out"), err
    assert err.strip().count("\n") == 0, err
    assert server.log.count() == 0


async def test_bench_out_that_cannot_be_written_stops_before_any_request(
    emulator: EmulatorFactory, phone_photos: Path, tmp_path: Path
) -> None:
    server = await emulator(EmulatorSettings(latency=0))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = await _batchcap("bench", str(phone_photos), "--target", f"a=hf:{MODEL}", "--api-base",
                                f"{server.url}/hf-inference", "--out", str(blocker / "bench"))
    assert code == 2
    assert "--out" in err
    assert err.strip().count("\n") == 0, err
    assert server.log.count() == 0


CHECKED = ("phone_portrait.jpg", "iphone.heic", "photo.avif", "bomb.png", "not_an_image.jpg", "truncated.jpg",
           "tiny.jpg", "rgba.png", "web_50k.jpg", "cmyk.jpg", "animated.gif", "line_art.png", "gray16.png")


async def test_check_counts_what_run_then_records_requests_and_sends(
    emulator: EmulatorFactory, corpus_paths: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    (folder / "copies").mkdir(parents=True)
    for name in CHECKED:
        (folder / name).write_bytes(corpus_paths[name].read_bytes())
    for name in ("phone_portrait.jpg", "iphone.heic", "bomb.png", "tiny.jpg"):  # copies, a bomb's included
        (folder / "copies" / f"copy of {name}").write_bytes(corpus_paths[name].read_bytes())
    server = await emulator(EmulatorSettings(latency=0))
    flags = ["--api", "openai", "--model", MODEL, "--base-url", f"{server.url}/v1", "--rate", "unlimited",
             "--out", str(tmp_path / "r.jsonl")]
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-m", "batchcap", "check", str(folder), *flags, "--json"],
                                       env=_env(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = orjson.loads(done.stdout)
    assert server.log.count() == 0
    code, err = await _batchcap("run", str(folder), *flags, "-q")
    assert code == 1, err  # the broken files and the bomb are error records
    records = [orjson.loads(line) for line in (tmp_path / "r.jsonl").read_bytes().splitlines()]
    sent = [r for r in records if r.get("attempts", 0) >= 1]

    assert report["files"] == len(records) == len(CHECKED) + 4
    assert report["unreadable"] == sum(1 for r in records if (r.get("error") or {}).get("type") == "InputError")
    assert report["unreadable"] == 4  # not_an_image, truncated, the bomb and its copy; HEIC and AVIF are read
    assert report["duplicates"] == sum(1 for r in records if r.get("duplicate_of"))
    assert report["to_caption"] == len(sent) == _captioned(server)
    assert report["images"] == report["files"] - report["unreadable"]
    bytes_sent = sum(r["bytes_sent"] for r in sent)
    assert abs(report["bytes_to_send"] - bytes_sent) <= 0.15 * bytes_sent, (report["bytes_to_send"], bytes_sent)
    assert report["header_unreadable"] == 0  # the HEIC and the AVIF are read, as run reads them
    bomb_copy = next(r for r in records if r["path"] == "copies/copy of bomb.png")
    assert bomb_copy["error"]["type"] == "InputError"  # a copy of a refused file gets its record too
    assert bomb_copy["duplicate_of"] == "bomb.png"


async def test_the_readme_check_examples_run(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """Every ``batchcap check`` line of the README, with its URLs pointed at the emulator and its folder made."""
    import re
    import shlex

    from batchcap.source.samples import generate

    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Before a run: `batchcap check`", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("batchcap check ")]
    assert len(lines) >= 3
    server = await emulator(EmulatorSettings(latency=0))
    generate(tmp_path / "photos", 12, seed=4)
    for line in lines:
        line = re.sub(r"https://[a-z0-9.-]+\.huggingface\.co(/v1)?|https://xyz\.[a-z0-9.-]+", server.url + r"\1", line)
        argv = [a.replace("photos/", str(tmp_path / "photos") + "/") for a in shlex.split(line)[1:]]
        argv = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in argv]
        code, err = await _batchcap(*argv, cwd=repo)
        assert code == 0, (line, err)
    assert _captioned(server) == 10  # the one example with --probe 10
