"""Issue 19: caption parquet, WebDataset and fsspec inputs as they are; real writers (``datasets``,
``webdataset.TarWriter``) make the data, the emulator answers over loopback, the CLI runs as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hubdata import noise_jpeg, png, write_parquet, write_tars

from batchcap.cli import EXIT_OK, main
from batchcap.config import RunConfig
from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator, caption_for
from batchcap.run import run

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = DEFAULT_MODEL_ID
ROWS = 600


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base["HF_HOME"] = "/nonexistent-batchcap-test"
    return base


def command(server: RunningEmulator, source: Path | str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batchcap", "run", str(source), "--out", str(out), "--model", MODEL,
            "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited", "--quiet", *extra]


def records(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines() if line.endswith(b"}")]


def ok_lines(out: Path) -> Counter[str]:
    return Counter(r["path"] for r in records(out) if r["status"] == "ok")


async def wait_for_lines(out: Path, n: int, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not out.exists() or len(out.read_bytes().splitlines()) < n:
            await anyio.sleep(0.02)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [png(i) for i in range(ROWS)]


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory, images: list[bytes]) -> Path:
    folder = tmp_path_factory.mktemp("pq") / "data"
    write_parquet(folder, images, 3)
    return folder


@pytest.fixture(scope="module")
def tar_dir(tmp_path_factory: pytest.TempPathFactory, images: list[bytes]) -> Path:
    folder = tmp_path_factory.mktemp("wds") / "shards"
    write_tars(folder, images, 3)
    return folder


def parquet_ids() -> dict[str, int]:
    """id -> image index of the 600 rows in 3 shards of 200."""
    return {f"train-{s:05d}-of-00003.parquet#{r}": s * 200 + r for s in range(3) for r in range(200)}


def tar_ids() -> dict[str, int]:
    return {f"shard-{s:05d}.tar/{s * 200 + r:09d}.png": s * 200 + r for s in range(3) for r in range(200)}


async def kill_then_resume(server: RunningEmulator, source: Path, out: Path) -> tuple[int, int]:
    """Run, kill -9 after some lines, run again to the end: (ok lines at the kill, requests the resume sent)."""
    cmd = command(server, source, out, "--concurrency", "4")
    async with await anyio.open_process(cmd, env=env()) as proc:
        await wait_for_lines(out, 60)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    whole = out.read_bytes().split(b"\n")[:-1]  # what the kill left after the last newline is a torn line
    at_kill = len({orjson.loads(line)["path"] for line in whole if orjson.loads(line)["status"] == "ok"})
    with out.open("ab") as f:  # as if the machine died mid-write
        f.write(b'{"path":"torn#1","sta')
    assert 60 <= at_kill < ROWS
    resumed_at = time.monotonic()  # the emulator's log times admissions on this clock (it runs in this process)
    with anyio.fail_after(120):
        done = await anyio.run_process(cmd, env=env(), check=False)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    # admitted after the resume began: a request of the killed run still finishing at the server is not counted
    return at_kill, sum(1 for e in server.log.entries if e.status == 200 and e.t >= resumed_at)


@pytest.mark.parametrize("kind", ["parquet", "webdataset"])
async def test_every_row_one_ok_line_and_kill_9_resume_sends_only_the_rest(
    emulator: Emulator, tmp_path: Path, images: list[bytes], parquet_dir: Path, tar_dir: Path, kind: str
) -> None:
    server = await emulator(EmulatorSettings(latency=0.01))
    source, ids = (parquet_dir, parquet_ids()) if kind == "parquet" else (tar_dir, tar_ids())
    out = tmp_path / "out.jsonl"
    at_kill, resumed = await kill_then_resume(server, source, out)
    oks = ok_lines(out)
    assert oks.keys() == ids.keys()  # every row, by its stable id
    assert set(oks.values()) == {1}  # exactly one ok line each
    assert resumed == ROWS - at_kill  # the resume sent only the rest
    got = {r["path"]: r["caption"] for r in records(out) if r["status"] == "ok"}
    assert all(got[k] == caption_for(images[i]) for k, i in ids.items())  # each caption is its own image's
    manifest = orjson.loads(out.with_name("out.manifest.json").read_bytes())
    assert manifest["source"]["kind"] == kind
    assert manifest["source"]["files"] == 3


async def in_process(server: RunningEmulator, source: Path | str, out: Path, **kw: Any) -> dict[str, str]:
    cfg = RunConfig.build(input_dir=source, out=out, model=MODEL, api_base=f"{server.url}/hf-inference",
                          concurrency=8, rate=None, timeout=10.0, **kw).validate()
    stats = await run(cfg)
    assert stats.failed == 0
    return {r["path"]: r["caption"] for r in records(out) if r["status"] == "ok"}


async def test_the_same_parquet_through_memory_and_file_urls_gives_identical_results(
    emulator: Emulator, tmp_path: Path, parquet_dir: Path
) -> None:
    import fsspec

    server = await emulator(EmulatorSettings())
    local = await in_process(server, parquet_dir, tmp_path / "local.jsonl")
    fs = fsspec.filesystem("memory")
    for p in sorted(parquet_dir.iterdir()):
        fs.pipe(f"/batchcap-test/data/{p.name}", p.read_bytes())
    try:
        memory = await in_process(server, "memory://batchcap-test/data", tmp_path / "memory.jsonl")
        single = await in_process(server, "memory://batchcap-test/data/train-00001-of-00003.parquet",
                                  tmp_path / "single.jsonl")
    finally:
        fs.rm("/batchcap-test", recursive=True)
    file_url = await in_process(server, parquet_dir.as_uri(), tmp_path / "file.jsonl")
    assert len(local) == ROWS
    assert memory == local
    assert file_url == local
    assert single == {k: v for k, v in local.items() if k.startswith("train-00001-of-00003.parquet#")}
    manifest = orjson.loads((tmp_path / "memory.manifest.json").read_bytes())
    assert manifest["source"]["location"] == "memory://batchcap-test/data"
    assert manifest["config"]["input_dir"] == "memory://batchcap-test/data"


async def test_a_folder_of_images_at_a_memory_url_reads_like_the_folder(
    emulator: Emulator, tmp_path: Path, images: list[bytes]
) -> None:
    import fsspec

    server = await emulator(EmulatorSettings())
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    fs = fsspec.filesystem("memory")
    for i in range(12):
        rel = f"sub/{i}.png" if i % 2 else f"{i}.png"
        (folder / rel).write_bytes(images[i])
        fs.pipe(f"/batchcap-imgs/{rel}", images[i])
    try:
        remote = await in_process(server, "memory://batchcap-imgs", tmp_path / "remote.jsonl")
    finally:
        fs.rm("/batchcap-imgs", recursive=True)
    assert remote == await in_process(server, folder, tmp_path / "local.jsonl")
    assert len(remote) == 12


def _peak_rss_kb(argv: list[str]) -> int:
    """Run ``argv`` to its end; its peak resident set (kB): the kernel's high-water mark of the process's own
    memory (``VmHWM``), read until it exits. (``wait4``'s ``ru_maxrss`` would count the forked copy of pytest.)"""
    import time

    peak = 0
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=env()) as proc:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    hwm = next((line for line in f if line.startswith("VmHWM:")), None)
            except OSError:
                break
            if hwm is not None:
                peak = max(peak, int(hwm.split()[1]))
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
        assert proc.wait() == EXIT_OK
    return peak


def _run_in_thread(argv: list[str]) -> Callable[[], int]:
    return lambda: _peak_rss_kb(argv)


async def test_peak_rss_does_not_grow_with_the_shard_size(emulator: Emulator, tmp_path: Path) -> None:
    """The same 240 photo-sized images (~370 KB each) as 12 shards of 20 and as 1 shard of 240 (one row group,
    as ``datasets`` writes up to 100 MB): a reader that held a shard or a row group would need ~80 MB more for the
    big one; reading row batches, the two differ by ~10 MB (measured). 240 images, so that the run's own bounded
    buffers (a few read batches, the senders' queue) are full in both runs."""
    server = await emulator(EmulatorSettings())
    photos = [noise_jpeg(i, side=640) for i in range(240)]
    small = write_parquet(tmp_path / "small", photos, 12)
    big = write_parquet(tmp_path / "big", photos, 1)
    shard_mb = big[0].stat().st_size / 1e6
    assert shard_mb > 80
    peaks: dict[str, int] = {}
    # Each twice, alternated, the lower peak kept: how far the readers get ahead of the senders depends on the
    # scheduler (a loaded CI machine once gave 25 MB more in one run); a reader that held a shard or a row group
    # would need its ~80 MB more in every run.
    for round_ in range(2):
        for name, folder in (("small", small[0].parent), ("big", big[0].parent)):
            out = tmp_path / f"{name}-{round_}.jsonl"
            argv = command(server, folder, out, "--concurrency", "8", "--max-side", "0", "--no-dedupe")
            peak = await anyio.to_thread.run_sync(_run_in_thread(argv))
            peaks[name] = min(peaks.get(name, peak), peak)
            assert len(ok_lines(out)) == 240
    growth_mb = (peaks["big"] - peaks["small"]) / 1024
    assert growth_mb < shard_mb / 4, (peaks, shard_mb)


async def test_sidecar_text_and_columns_reach_the_job(tmp_path: Path, images: list[bytes],
                                                      parquet_dir: Path, tar_dir: Path) -> None:
    """What prompt templates read (issue 16): a tar sample's .txt/.json and a parquet row's other columns."""
    from batchcap.source.datasets import open_source
    from batchcap.source.read import load_batch

    tar_job = next(iter(open_source(tar_dir).batches(batch_size=4)))[1]
    loaded = load_batch([tar_job], max_bytes=1 << 20)[0]
    assert not isinstance(loaded, tuple)
    assert loaded.job.context is not None
    assert loaded.job.context["txt"] == "sidecar text of sample 1"
    assert orjson.loads(loaded.job.context["json"]) == {"key": 1, "caption": "alt text 1"}
    assert loaded.job.data is None  # the bytes live in the LoadedImage only
    row = next(iter(open_source(parquet_dir).batches(batch_size=4)))[2]
    assert row.context == {"label": "2", "text": "row 2 of shard 0"}


def test_an_input_of_no_kind_batchcap_reads_says_which_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "notes.csv"
    odd.write_text("a,b\n")
    assert main(["run", str(odd), "--model", "m", "--out", str(tmp_path / "o.jsonl")]) != EXIT_OK
    err = capsys.readouterr().err
    assert "a .parquet file, a WebDataset .tar" in err
    assert "hf://datasets" in err
    assert err.count("\n") == 1
    assert main(["check", "nope://x/y"]) != EXIT_OK
    assert "nope" in capsys.readouterr().err


async def test_shards_of_a_tar_dataset_are_whole_tars_and_merge_then_export(
    emulator: Emulator, tmp_path: Path, tar_dir: Path
) -> None:
    server = await emulator(EmulatorSettings())
    parts = [tmp_path / f"part-{i}.jsonl" for i in (1, 2, 3)]
    codes = [0, 0, 0]

    async def shard(i: int) -> None:
        done = await anyio.run_process(command(server, tar_dir, parts[i - 1], "--shard", f"{i}/3"), env=env(),
                                       check=False)
        codes[i - 1] = done.returncode

    async with anyio.create_task_group() as tg:
        for i in (1, 2, 3):
            tg.start_soon(shard, i)
    assert codes == [EXIT_OK] * 3
    tars_of = [{k.split("/")[0] for k in ok_lines(p)} for p in parts]
    for i, a in enumerate(tars_of):  # a tar is read by one shard only: whole tars
        for b in tars_of[i + 1 :]:
            assert not a & b
    assert set().union(*(ok_lines(p).keys() for p in parts)) == tar_ids().keys()
    assert server.log.count(200) == ROWS
    out = tmp_path / "all.jsonl"
    merged = await anyio.run_process([sys.executable, "-m", "batchcap", "merge", str(out), *map(str, parts)],
                                     env=env(), check=False)
    assert merged.returncode == EXIT_OK, merged.stderr.decode()
    assert ok_lines(out).keys() == tar_ids().keys()
    exported = await anyio.run_process([sys.executable, "-m", "batchcap", "export", str(out), "--format", "parquet",
                                        "--out", str(tmp_path / "ds")], env=env(), check=False)
    assert exported.returncode == EXIT_OK, exported.stderr.decode()  # the merged manifest names the tars


def test_check_counts_a_dataset_as_run_would_read_it(tmp_path: Path, parquet_dir: Path, tar_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for source in (parquet_dir, tar_dir, parquet_dir / "train-00001-of-00003.parquet"):
        assert main(["check", str(source), "--json"]) == EXIT_OK
        report = orjson.loads(capsys.readouterr().out)
        want = 200 if source.suffix == ".parquet" else ROWS
        assert report["images"] == want, source
        assert report["to_caption"] == want
        assert report["unreadable"] == 0
