"""`batchcap run --shard I/N` then `batchcap merge`, as a user runs them: real subprocesses, one emulator."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap.cli import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, main
from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator
from batchcap.source.samples import generate
from batchcap.source.shard import shard_of

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]


def records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def run_shard(server: RunningEmulator, folder: Path, out: Path, shard: str) -> list[str]:
    return [sys.executable, "-m", "batchcap", "run", str(folder), "--shard", shard, "--out", str(out),
            "--model", DEFAULT_MODEL_ID, "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited",
            "--concurrency", "8", "--quiet"]


async def run_three(server: RunningEmulator, folder: Path, parts: list[Path]) -> list[int]:
    """The three shards at once, as three machines would run them; their exit codes in shard order."""
    codes = [0, 0, 0]

    async def shard(i: int) -> None:
        done = await anyio.run_process(run_shard(server, folder, parts[i - 1], f"{i}/3"), check=False)
        codes[i - 1] = done.returncode

    async with anyio.create_task_group() as tg:
        for i in (1, 2, 3):
            tg.start_soon(shard, i)
    return codes


async def test_a_scan_problem_is_recorded_by_one_shard_only(emulator: Emulator, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    folder = tmp_path / "imgs"
    generate(folder, 30, seed=3)
    with open(os.fsencode(folder) + b"/bad-\xff-name.jpg", "wb") as f:  # not UTF-8: a scan problem record
        f.write(b"x")
    parts = [tmp_path / f"part-{i}.jsonl" for i in (1, 2, 3)]
    codes = await run_three(server, folder, parts)
    problems = [[r for r in records(p) if r["status"] == "error"] for p in parts]
    assert sorted(len(p) for p in problems) == [0, 0, 1]
    assert sorted(codes) == [EXIT_OK, EXIT_OK, EXIT_ERRORS]  # the shard that owns it says so


async def test_three_shards_of_400_then_merge(emulator: Emulator, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    folder = tmp_path / "imgs"
    paths = [p.relative_to(folder).as_posix() for p in generate(folder, 1200, seed=11)]
    parts = [tmp_path / f"part-{i}.jsonl" for i in (1, 2, 3)]
    assert await run_three(server, folder, parts) == [EXIT_OK] * 3
    seen = [{r["path"] for r in records(p)} for p in parts]
    assert sum(map(len, seen)) == len(set().union(*seen))  # disjoint
    assert set().union(*seen) == set(paths)  # union = all
    assert all(abs(len(s) - 400) < 60 for s in seen)  # balanced
    assert all(shard_of(p, 3) == i for i, s in enumerate(seen, 1) for p in s)
    assert server.log.count(200) == 1200  # each image captioned once, by one shard
    again = await anyio.run_process(run_shard(server, folder, parts[0], "1/3"))  # each shard resumes on its own
    assert again.returncode == EXIT_OK
    assert server.log.count(200) == 1200
    out = tmp_path / "all.jsonl"
    done = await anyio.run_process([sys.executable, "-m", "batchcap", "merge", str(out), *map(str, parts)])
    assert done.returncode == EXIT_OK
    assert b"1200 images (1200 ok, 0 errors)" in done.stderr
    merged = records(out)
    assert Counter(r["path"] for r in merged) == Counter(paths)  # exactly one line per image
    assert all(r["status"] == "ok" for r in merged)
    manifest = orjson.loads(out.with_name("all.manifest.json").read_bytes())
    assert [p["manifest"]["config"]["shard"] for p in manifest["parts"]] == ["1/3", "2/3", "3/3"]
    assert manifest["config"]["input_dir"] == str(folder)
    exported = await anyio.run_process([sys.executable, "-m", "batchcap", "export", str(out), "--format", "csv",
                                        "--out", str(tmp_path / "csv")], check=False)
    assert exported.returncode == EXIT_OK, exported.stderr  # export takes the merged file (and finds the folder)
    assert len((tmp_path / "csv" / "metadata.csv").read_bytes().splitlines()) == 1 + 1200


def test_shard_flag_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0/3", "4/3", "x"):
        assert main(["run", str(tmp_path), "--model", "m", "--shard", bad]) == EXIT_USAGE
        assert "--shard" in capsys.readouterr().err
    assert main(["run", str(tmp_path), "--model", "m", "--workers", "2"]) == EXIT_USAGE
    assert "--workers needs --ray" in capsys.readouterr().err


def test_merge_command_refuses_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", str(tmp_path / "out.jsonl"), str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "does not exist" in err
    assert main(["merge", str(tmp_path / "out.jsonl")]) == EXIT_USAGE
