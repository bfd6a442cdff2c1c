"""``batchcap bench`` end to end against two emulators: a rate-limited, cold-starting "free API" and an endpoint."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import fields
from pathlib import Path

import anyio
import orjson
import pytest

from batchcap.bench import (
    BenchSettings,
    parse_target,
    resolve_targets,
    run_bench,
)
from batchcap.bench.report import write_reports
from batchcap.bench.stats import ColdStart, Latency, StepStats, ThrottleSummary, WarmupStats
from batchcap.cli import main as cli_main
from batchcap.cli.bench import add_arguments
from batchcap.emulator import DEFAULT_MODEL_ID, EmulatorSettings, RunningEmulator
from batchcap.errors import BenchAborted, UsageError

Emulator = Callable[[EmulatorSettings], Awaitable[RunningEmulator]]
MODEL = DEFAULT_MODEL_ID
SECRET = "hf_bench_secret_token"


def names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


@pytest.fixture
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-hf-home"))


async def test_bench_end_to_end(emulator: Emulator, sample_dir: Path, tmp_path: Path, no_ambient_token: None) -> None:
    # c=1 stays under the limit (< 4.4 requests/s); c=4 offers ~16/s against 5/s and draws 429s
    free = await emulator(EmulatorSettings(rate=5.0, burst=2, cold_start=0.4, latency=0.25, latency_jitter=0.02,
                                           name="free-api"))
    endpoint = await emulator(EmulatorSettings(auth="protected", tokens=(SECRET,), latency=0.02,
                                               latency_jitter=0.005, name="endpoint"))
    token_file = tmp_path / "endpoint.token"
    token_file.write_text(SECRET + "\n")
    targets = resolve_targets(
        [f"free=hf:{MODEL}", f"endpoint={endpoint.url}/"],
        api_base=f"{free.url}/hf-inference",
        token_files=[f"endpoint={token_file}"],
        prices=["free=0", "endpoint=0.60"],
    )
    settings = BenchSettings(
        targets=targets, images_dir=sample_dir, images=8, concurrency=(1, 4), arrival_rates=(8.0,), requests=16,
        duration=1.2, warmup=2, slo=1.0, cold_start_timeout=5.0, max_time=30.0,
    )
    with anyio.fail_after(20):
        result = await run_bench(settings)
    paths = write_reports(result, tmp_path / "out")

    doc = orjson.loads(paths.json.read_bytes())
    assert set(doc) == {"schema", "started_at", "elapsed_s", "stopped", "slo_p95_s", "verdict", "definitions",
                        "config", "versions", "machine", "images", "targets"}
    assert doc["stopped"] is None
    assert {"batchcap", "python", "aiohttp", "anyio", "event_loop", "git_commit"} <= set(doc["versions"])
    assert {"platform", "python", "cpu_count", "machine"} <= set(doc["machine"])
    assert doc["images"]["count"] == 8
    assert [t["name"] for t in doc["config"]["targets"]] == ["free", "endpoint"]
    assert doc["config"]["requests"] == 16
    assert doc["config"]["concurrency"] == [1, 4]

    by_name = {t["name"]: t for t in doc["targets"]}
    for t in by_name.values():
        assert {"name", "description", "url", "api", "price_per_hour", "pricing", "token_source", "cold_start",
                "knee", "throttle", "notes", "steps", "space_quota"} == set(t)
        assert set(t["cold_start"]) == names(ColdStart)
        assert set(t["throttle"]) == names(ThrottleSummary)
        assert [(s["stats"]["mode"], s["stats"]["level"]) for s in t["steps"]] == [
            ("closed", 1), ("closed", 4), ("open", 8.0)]
        for step in t["steps"]:
            stats = step["stats"]
            assert set(stats) == names(StepStats)
            assert set(stats["latency"]) == names(Latency)
            assert set(stats["warmup"]) == names(WarmupStats)
            assert set(stats["errors"]) == {"429", "503", "5xx", "timeout", "other"}
            assert len(step["samples"]) == stats["requests"] > 0
            assert len(step["warmup_samples"]) == stats["warmup"]["requests"] == 2
            assert stats["ok"] + sum(stats["errors"].values()) == stats["requests"]
            assert stats["bytes_sent"] == sum(x["bytes_sent"] for x in step["samples"]) > 0
            for x in step["samples"]:
                assert set(x) == {"i", "scheduled_s", "sent_s", "done_s", "latency_s", "ok", "kind", "status",
                                  "bytes_sent", "cost_usd"}
                assert x["scheduled_s"] <= x["sent_s"] <= x["done_s"]
                assert x["latency_s"] == pytest.approx(x["done_s"] - x["scheduled_s"], abs=1e-5)

    free_t, ep_t = by_name["free"], by_name["endpoint"]
    assert free_t["cold_start"]["ok"]
    assert free_t["cold_start"]["seconds"] >= 0.35  # the emulated model took 0.4 s to load
    assert free_t["cold_start"]["errors"].get("503", 0) >= 1
    assert ep_t["cold_start"]["seconds"] < 0.3
    assert free_t["steps"][1]["stats"]["errors"]["429"] > 0  # 4 in flight against 5/s with a burst of 2
    assert free_t["throttle"]["throttled"]
    assert free_t["throttle"]["first_throttled_level"] == 4
    assert ep_t["steps"][1]["stats"]["errors"] == dict.fromkeys(("429", "503", "5xx", "timeout", "other"), 0)
    knee = ep_t["knee"]
    assert knee["level"] == 4
    assert knee["cost_per_1000"] == pytest.approx(0.60 / (knee["images_per_s"] * 3600) * 1000)
    assert knee["images_per_dollar"] == pytest.approx(knee["images_per_s"] * 3600 / 0.60)
    assert free_t["steps"][0]["stats"]["cost_per_1000"] == 0.0
    assert ep_t["token_source"] == f"--token-file {token_file}"

    assert doc["verdict"].startswith("**endpoint** is the faster choice")
    markdown = paths.markdown.read_text()
    assert doc["verdict"] in markdown
    assert "| endpoint | **4** ◀ knee |" in markdown
    assert "Open loop" in markdown
    assert paths.plot is not None
    assert paths.plot.read_bytes().startswith(b"\x89PNG")
    assert SECRET not in paths.json.read_text() + markdown

    # bounded: every request is accounted for, nothing ran on in the background
    for server, target in ((free, free_t), (endpoint, ep_t)):
        sent = target["cold_start"]["attempts"] + sum(
            len(s["samples"]) + len(s["warmup_samples"]) for s in target["steps"])
        assert server.log.count() == sent


async def test_a_refused_token_aborts(emulator: Emulator, sample_dir: Path, no_ambient_token: None) -> None:
    locked = await emulator(EmulatorSettings(auth="protected"))
    settings = BenchSettings(targets=resolve_targets([f"ep={locked.url}/"], api_base="http://unused"),
                             images_dir=sample_dir, images=2, concurrency=(1,), requests=2, warmup=0)
    with anyio.fail_after(10), pytest.raises(BenchAborted, match=r"requires a token .* --token-file ep=PATH"):
        await run_bench(settings)


async def test_a_wrong_model_path_aborts(emulator: Emulator, sample_dir: Path, no_ambient_token: None) -> None:
    server = await emulator(EmulatorSettings())
    targets = resolve_targets([f"x=hf:{MODEL}"], api_base=f"{server.url}/no-such-route")
    settings = BenchSettings(targets=targets, images_dir=sample_dir, images=2, concurrency=(1,), requests=2)
    with anyio.fail_after(10), pytest.raises(BenchAborted, match=r"target x: .*check the URL or model"):
        await run_bench(settings)


async def test_cli_exit_code_3_on_refused_token(emulator: Emulator, sample_dir: Path, tmp_path: Path) -> None:
    locked = await emulator(EmulatorSettings(auth="protected"))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "no-hf-home")
    with anyio.fail_after(15):
        done = await anyio.run_process(
            [sys.executable, "-m", "batchcap", "bench", str(sample_dir), "--target", f"ep={locked.url}/",
             "--out", str(tmp_path / "out")],
            env=env, check=False,
        )
    assert done.returncode == 3
    assert done.stderr.decode().strip().splitlines()[-1].startswith("batchcap bench: aborted: target ep:")
    assert not (tmp_path / "out" / "bench.json").exists()


# --- the command line, in process ----------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batchcap bench")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def bench_cli(*argv: str) -> int:
    """``batchcap bench ARGV`` in process, through the CLI's one parser and exit-code mapping."""
    return cli_main(["bench", *argv])


def test_demo_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench-out"
    assert bench_cli("--demo", "--concurrency", "2,8", "--requests", "8", "--duration", "0.6", "--warmup", "1",
                     "--images", "6", "--out", str(out), "--plot-format", "svg", "--event-loop", "asyncio") == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("**endpoint** is the faster choice")
    assert "| target | concurrency | images/s |" in printed.out
    assert f"wrote {out / 'bench.json'}" in printed.err
    assert (out / "bench.md").exists()
    assert (out / "bench.svg").read_text().lstrip().startswith("<?xml")
    page = (out / "bench.html").read_text()
    assert "endpoint" in page
    assert "is the faster choice" in page  # the verdict, in a self-contained page
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n")
    assert "sdk: static" in readme
    assert "app_file: bench.html" in readme
    doc = orjson.loads((out / "bench.json").read_bytes())
    assert doc["config"]["demo"] is True
    assert [t["price_per_hour"] for t in doc["targets"]] == [0.0, 0.6, None]
    router = doc["targets"][2]  # billed by the token: its $ / 1k images from its answers' measured usage
    assert router["pricing"].startswith("emu-cheap $0.1 in / $0.4 out per 1M tokens, emu-fast $0.25 in / $1 out")
    assert all(s["stats"]["cost_per_1000"] > 0 for s in router["steps"])
    assert all(x["cost_usd"] > 0 for s in router["steps"] for x in s["samples"] if x["ok"])
    assert "| router | 2 |" in printed.out
    assert "| tokens | $" in printed.out
    assert "The cheapest within the 2 s SLO is **free** at $0 per 1,000 images" in printed.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "name at least one --target"),
        (("--target", "free=hf:m"), "give the folder of images"),
        (("d", "--target", "nospec"), "expected NAME=SPEC"),
        (("d", "--target", "a=ftp://x"), "SPEC must start with"),
        (("d", "--target", "a=hf:m", "--target", "a=hf:n"), "appears twice"),
        (("d", "--target", "a=hf:m", "--price-per-hour", "b=1"), "no target is named 'b'"),
        (("d", "--target", "a=hf:m", "--price-per-hour", "a=cheap"), "expected dollars per hour"),
        (("d", "--target", "a=hf:m", "--target", "b=hf:n", "--price-per-hour", "2"), "say which target"),
        (("--demo", "--target", "a=hf:m"), "drop --target"),
        (("d", "--images-dir", "e", "--target", "a=hf:m"), "two image folders"),
        (("d", "--target", "a=https://user:pw@example.com"), "must not carry credentials"),
    ],
)
def test_usage_errors_exit_2(argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cli(*argv) == 2
    assert message in capsys.readouterr().err


def test_flag_syntax_is_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--concurrency", "0,2"], ["--concurrency", "a"], ["--arrival-rate", "-1"], ["--requests", "0"]):
        with pytest.raises(SystemExit) as exc:
            parse(*argv)
        assert exc.value.code == 2
    assert parse("--concurrency", "8,1,2,2").concurrency == (1, 2, 8)
    assert parse("--arrival-rate", "5,10,20").arrival_rate == (5.0, 10.0, 20.0)


@pytest.mark.parametrize(
    ("text", "api", "url"),
    [
        (f"free=hf:{MODEL}", "hf", f"https://router.huggingface.co/hf-inference/models/{MODEL}"),
        ("ep=https://abc.us-east-1.aws.endpoints.huggingface.cloud", "hf",
         "https://abc.us-east-1.aws.endpoints.huggingface.cloud"),
        ("j=hf-json:org/model", "hf-json", "https://router.huggingface.co/hf-inference/models/org/model"),
        ("vlm=openai:Qwen/Qwen2.5-VL-7B-Instruct@https://router.huggingface.co/v1", "openai",
         "https://router.huggingface.co/v1/chat/completions"),
        ("vlm=configs/openai-vlm.toml", "openai", "https://router.huggingface.co/v1/chat/completions"),
        ("configs/free-api.toml", "hf", f"https://router.huggingface.co/hf-inference/models/{MODEL}"),
    ],
)
def test_target_specs(text: str, api: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    t = parse_target(text)
    assert (t.cfg.target.api, t.cfg.target.url) == (api, url)
    if text.startswith("configs/free-api"):
        assert t.name == "free-api"  # a bare profile is named after its file


def test_token_files_and_prices_attach_to_their_targets(tmp_path: Path) -> None:
    targets = resolve_targets(
        ["a=hf:m", "b=https://x.example"], api_base="http://127.0.0.1:1",
        token_files=["b=/tmp/b-token"], prices=["a=0", "b=$1.30"],
    )
    assert [(t.name, t.token_file, t.price_per_hour) for t in targets] == [
        ("a", None, 0.0), ("b", Path("/tmp/b-token"), 1.3)]
    shared = resolve_targets(["a=hf:m"], api_base="http://127.0.0.1:1", token_files=["/tmp/tok=en"], prices=["4"])
    assert (shared[0].token_file, shared[0].price_per_hour) == (Path("/tmp/tok=en"), 4.0)
    with pytest.raises(UsageError):
        parse_target("a=openai:model-without-base")


def test_unreachable_target_still_reports_and_exits_1(sample_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out"
    assert bench_cli(str(sample_dir), "--target", f"dead=http://127.0.0.1:{port}/", "--cold-start-timeout", "0.6",
                     "--images", "2", "--out", str(out), "--event-loop", "asyncio") == 1
    printed = capsys.readouterr()
    assert printed.out.startswith("No target returned a single caption (dead: ")
    assert "last error: cannot connect to 127.0.0.1" in printed.out
    doc = orjson.loads((out / "bench.json").read_bytes())
    assert doc["targets"][0]["steps"] == []
    assert "sweep skipped" in doc["targets"][0]["notes"][0]


async def test_max_time_cuts_the_sweep_and_says_so(emulator: Emulator, sample_dir: Path,
                                                   no_ambient_token: None) -> None:
    slow = await emulator(EmulatorSettings(latency=0.2))
    settings = BenchSettings(targets=resolve_targets([f"a={slow.url}/", f"b={slow.url}/"], api_base="http://x"),
                             images_dir=sample_dir, images=2, concurrency=(1, 2, 4), requests=100, warmup=0,
                             max_time=1.5)
    with anyio.fail_after(5):
        result = await run_bench(settings)
    assert result.elapsed_s < 1.5 + 0.5
    assert result.stopped == "max_time"
    a, b = result.targets
    assert a.steps[0].stats.stopped_by == "deadline"  # a got half the time, then b its share
    assert b.steps, "the second target still got its share of the time"
    assert any("steps from concurrency 2 on were not run" in n for n in a.notes)


def test_report_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchcap.bench.report import write_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    note = write_plot(None, tmp_path / "x.png")  # type: ignore[arg-type]
    assert note == "matplotlib is not installed: pip install 'batchcap[plot]'"
    assert not (tmp_path / "x.png").exists()


async def test_a_step_without_successes_ends_the_closed_sweep(emulator: Emulator, sample_dir: Path,
                                                              no_ambient_token: None) -> None:
    # one token per 10 s: the cold-start probe takes it, then every request of the step is a 429
    stingy = await emulator(EmulatorSettings(rate=0.1, burst=1))
    settings = BenchSettings(targets=resolve_targets([f"s={stingy.url}/"], api_base="http://x"),
                             images_dir=sample_dir, images=2, concurrency=(1, 2, 4), requests=5, duration=0.4,
                             warmup=0, throttle_pause=0.05)
    with anyio.fail_after(5):
        result = await run_bench(settings)
    (t,) = result.targets
    assert [r.stats.level for r in t.steps] == [1]
    assert t.steps[0].stats.ok == 0
    assert t.steps[0].stats.errors["429"] == t.steps[0].stats.requests == 1  # the 429 said "retry in 10 s": honoured
    assert t.notes == ("nothing succeeded at concurrency 1: higher concurrency was not tried",)
    assert t.knee is None


async def test_ctrl_c_writes_the_partial_report_and_exits_130(tmp_path: Path) -> None:
    import signal

    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "batchcap", "bench", "--demo", "--out", str(out), "--concurrency", "1,2,4,8,16",
           "--images", "10"]
    seen = b""
    with anyio.fail_after(60):
        async with await anyio.open_process(cmd) as proc:
            assert proc.stderr is not None
            async for chunk in proc.stderr:
                seen += chunk
                if b"free c=1:" in seen:  # one step measured
                    proc.send_signal(signal.SIGINT)
                    break
            seen += b"".join([chunk async for chunk in proc.stderr])
            await proc.wait()
    assert proc.returncode == 130, seen.decode()
    assert b"Traceback" not in seen
    report = orjson.loads((out / "bench.json").read_bytes())
    assert report["stopped"] == "interrupted"
    free = report["targets"][0]
    assert free["name"] == "free"
    assert len(free["steps"]) >= 1
    assert any("interrupted" in note for note in free["notes"])
    assert "interrupted (Ctrl-C)" in (out / "bench.md").read_text()
