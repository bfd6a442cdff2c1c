"""The command as a user runs it: a real subprocess against the in-process emulator."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap.cli import EXIT_ABORTED, EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator
from batchcap.source.samples import generate

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = DEFAULT_MODEL_ID


def command(server: RunningEmulator, folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batchcap", "run", str(folder), "--out", str(out), "--model", MODEL,
            "--api-base", f"{server.url}/hf-inference", "--rate", "unlimited", *extra]


def env(**kw: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base["HF_HOME"] = "/nonexistent-batchcap-test"
    base.update(kw)
    return base


def journal_lines(out: Path) -> list[bytes]:
    return out.read_bytes().splitlines() if out.exists() else []


async def wait_for_lines(out: Path, n: int, timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while len(journal_lines(out)) < n:
            await anyio.sleep(0.02)


@pytest.fixture
def many(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    generate(folder, 150, seed=5)
    return folder


def test_help_documents_every_flag_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--model", "--api-base", "--endpoint", "--api", "--base-url", "--prompt", "--concurrency",
                 "--rate", "--burst", "--timeout", "--retries", "--config", "--quiet", "--token-file", "--retry-failed"):
        assert flag in text
    assert "default:" in text
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert code in text


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert main(["run", ".", "--concurrency", "0"]) == 2
    assert main(["run", ".", "--token", "hf_x"]) == 2  # a token is never a command-line value


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong command line, profile or path: exit 2 (nothing was sent), one line, never code 3 (which means a
    run started and was stopped: a script must tell a typo from an abort)."""
    assert main(["run", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--model" in err
    assert "Traceback" not in err
    assert main(["run", str(tmp_path / "missing"), "--model", "m"]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    for bad, said in ((["--jpeg-quality", "150"], "--jpeg-quality must be a whole number from 1 to 100"),
                      (["--endpoint", "htp://x"], "--endpoint must be an http(s) URL"),
                      (["--api", "openai", "--base-url", "http://127.0.0.1:9/v1"], "--api openai needs --model"),
                      (["--model", "m", "--max-side", "big"], "--max-side must be a whole number"),
                      (["--model", "m", "--rate", "fast"], "--rate must be a number")):
        assert main(["run", str(tmp_path), *bad]) == EXIT_USAGE, bad
        err = capsys.readouterr().err
        assert said in err, err
        assert len(err.strip().splitlines()) == 1, err


async def test_kill_9_mid_run_then_resume_loses_nothing(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(latency=0.03))
    out = tmp_path / "out.jsonl"
    cmd = command(server, many, out, "--concurrency", "4", "--quiet")
    async with await anyio.open_process(cmd, env=env()) as proc:
        await wait_for_lines(out, 20)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(journal_lines(out))
    assert 20 <= killed_at < 150
    with out.open("ab") as f:  # as if the machine died mid-write
        f.write(b'{"path":"torn/line.jpg","sta')
    with anyio.fail_after(60):
        result = await anyio.run_process(cmd, env=env(), check=False)
    assert result.returncode == EXIT_OK, result.stderr.decode()
    recs = [orjson.loads(line) for line in journal_lines(out)]
    oks = Counter(r["path"] for r in recs if r["status"] == "ok")
    assert len(oks) == 150
    assert set(oks.values()) == {1}  # exactly one ok line per image
    assert all(r["path"] != "torn/line.jpg" for r in recs)


async def test_ctrl_c_stops_cleanly_and_says_how_to_resume(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(latency=0.05))
    out = tmp_path / "out.jsonl"
    cmd = command(server, many, out, "--concurrency", "2", "--quiet")
    with anyio.fail_after(30):
        async with await anyio.open_process(cmd, env=env()) as proc:
            await wait_for_lines(out, 10)
            proc.send_signal(signal.SIGINT)
            await proc.wait()
            assert proc.stderr is not None
            err = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert proc.returncode == EXIT_INTERRUPTED
    assert "resume with: batchcap run" in err
    assert "Traceback" not in err
    manifest = orjson.loads((tmp_path / "out.manifest.json").read_bytes())
    assert manifest["state"] == "interrupted"
    with anyio.fail_after(60):
        result = await anyio.run_process(cmd, env=env(), check=False)
    assert result.returncode == EXIT_OK
    statuses = Counter(orjson.loads(line)["path"] for line in journal_lines(out))
    assert len(statuses) == 150
    assert set(statuses.values()) == {1}


async def test_sigterm_is_an_interrupt_too(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(latency=0.05))
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        async with await anyio.open_process(command(server, many, out, "--concurrency", "2", "-q"), env=env()) as proc:
            await wait_for_lines(out, 5)
            proc.terminate()
            await proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED


async def test_wrong_token_exits_3_with_one_clear_line(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(auth="protected"))
    secret = "hf_wrong_but_secret_value_42"
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        result = await anyio.run_process(command(server, many, out), env=env(HF_TOKEN=secret), check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_ABORTED
    assert "the token was refused by 127.0.0.1" in err
    assert "check HF_TOKEN" in err
    assert "Traceback" not in err
    assert secret not in err + result.stdout.decode()
    for f in tmp_path.glob("out*"):
        assert secret.encode() not in f.read_bytes()
    assert server.log.count() <= 5


async def test_token_from_file_and_per_image_errors_exit_1(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings(auth="protected"))
    (many / "junk.jpg").write_bytes(b"GIF89a but not really")
    token_file = tmp_path / "token"
    token_file.write_text("hf_emulator_token\n")
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(60):
        result = await anyio.run_process(
            command(server, many, out, "--token-file", str(token_file), "--quiet"), env=env(), check=False
        )
    assert result.returncode == EXIT_ERRORS, result.stderr.decode()
    assert "150 ok, 1 error," in result.stderr.decode()
    assert "InputError 1" in result.stderr.decode()


async def test_config_profile_and_flags_override(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    server = await emulator(EmulatorSettings())
    profile = tmp_path / "p.toml"
    profile.write_text(f'[target]\nmodel = "{MODEL}"\napi_base = "http://127.0.0.1:9/nowhere"\n'
                       '[limits]\nconcurrency = 3\nrate = "unlimited"\n')
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "batchcap", "run", str(many), "--out", str(out), "--config", str(profile),
           "--api-base", f"{server.url}/hf-inference", "-q"]
    with anyio.fail_after(60):
        result = await anyio.run_process(cmd, env=env(), check=False)
    assert result.returncode == EXIT_OK, result.stderr.decode()
    manifest = orjson.loads((tmp_path / "out.manifest.json").read_bytes())
    assert manifest["config"]["concurrency"] == 3
    assert manifest["config"]["api_base"].startswith(server.url)


async def test_a_full_disk_stops_with_one_line_and_loses_nothing(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    """The journal hits a file-size limit (as a full disk would): exit 3, one line, no torn record, resumable."""
    import shlex

    server = await emulator(EmulatorSettings())
    out = tmp_path / "out.jsonl"
    cmd = command(server, many, out, "--quiet")
    with anyio.fail_after(60):
        # ulimit -f counts 1 KiB blocks; Python ignores SIGXFSZ, so write() fails with EFBIG as on a full disk
        full = await anyio.run_process(["bash", "-c", f"ulimit -f 24 && exec {shlex.join(cmd)}"], env=env(),
                                       check=False)
    err = full.stderr.decode()
    assert full.returncode == EXIT_ABORTED, err
    assert "file size limit reached" in err
    assert "run the same command" in err
    assert "Traceback" not in err
    written = journal_lines(out)
    assert len(written) < 150  # (how many batches fit before the limit depends on timing)
    assert all(orjson.loads(line)["status"] == "ok" for line in written)  # every line whole
    with anyio.fail_after(60):
        again = await anyio.run_process(cmd, env=env(), check=False)
    assert again.returncode == EXIT_OK, again.stderr.decode()
    oks = Counter(orjson.loads(line)["path"] for line in journal_lines(out))
    assert len(oks) == 150
    assert set(oks.values()) == {1}


async def test_two_targets_on_the_command_line(emulator: Emulator, many: Path, tmp_path: Path) -> None:
    a = await emulator(EmulatorSettings(latency=0.01))
    b = await emulator(EmulatorSettings(latency=0.01))
    out = tmp_path / "r.jsonl"
    argv = [sys.executable, "-m", "batchcap", "run", str(many), "--out", str(out), "--route", "spread",
            "--target", f"a={a.url}/", "--target", f"b=hf:{MODEL}", "--api-base", f"{b.url}/hf-inference",
            "--price-per-hour", "a=1.20", "--rate", "unlimited"]
    result = await anyio.run_process(argv, env=env(), check=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_OK, err
    assert "via 2 targets (spread: a, b)" in err
    assert "a=endpoint:http://127.0.0.1" in err
    assert "b=hf:" in err
    targets = {orjson.loads(line)["target"].split("=", 1)[0] for line in journal_lines(out)}
    assert targets == {"a", "b"}
    manifest = orjson.loads((tmp_path / "r.manifest.json").read_bytes())
    assert sum(t["counts"]["ok"] for t in manifest["targets"].values()) == 150
