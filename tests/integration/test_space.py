"""Captioning through a Gradio Space (issue 20), against the emulator's Space over loopback.

What a user relies on: every image gets the app's caption, a full queue and a spent GPU quota are waits (never
a final error, never an image's retries), a quota that comes back after --max-wait stops the run resumably and
says when, the same error for every image stops the run like any systematic refusal, the token goes only where
it should. ``gradio_client``, Gradio's own client, judges the emulator.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import orjson
import pytest
from conftest import EmulatorFactory

from batchcap.cli import EXIT_ABORTED, EXIT_OK, EXIT_USAGE
from batchcap.config import RunConfig
from batchcap.emulator import DEFAULT_TOKEN, EmulatorSettings, RunningEmulator, caption_for
from batchcap.emulator.spaceapp import SPACE
from batchcap.errors import AuthError, RunAborted
from batchcap.run import REFUSAL_LIMIT, run
from batchcap.service.auth import Secret
from batchcap.source.samples import generate


def space(**kw: object) -> EmulatorSettings:
    return EmulatorSettings(profile="space", space_heartbeat=0.05, **kw)  # type: ignore[arg-type]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    generate(tmp_path / "img", 12, seed=7)
    return tmp_path / "img"


def config(images: Path, out: Path, server: RunningEmulator, **kw: object) -> RunConfig:
    return RunConfig.build(input_dir=images, out=out, space=server.url, rate=None, timeout=10.0, max_side=0,
                           **kw).validate()


def lines(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []


def expected(images: Path) -> dict[str, str]:
    return {p.relative_to(images).as_posix(): caption_for(p.read_bytes()) for p in images.rglob("*") if p.is_file()}


async def test_gradio_client_gets_the_emulators_caption(
    emulator: EmulatorFactory, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    from gradio_client import Client, handle_file

    server = await emulator(space(latency=0.01))
    image = next(p for p in sorted(images.rglob("*")) if p.suffix in (".jpg", ".png"))

    def predict() -> object:
        client = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
        try:
            return client.predict(handle_file(str(image)), api_name="/caption")
        finally:
            client.close()

    with anyio.fail_after(60):
        caption = await anyio.to_thread.run_sync(predict)
    assert caption == caption_for(image.read_bytes())
    assert server.app[SPACE].invocations == 1


async def test_a_run_through_a_space_captions_every_image_once(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(space(latency=0.02))
    out = tmp_path / "out.jsonl"
    stats = await run(config(images, out, server, space_inputs=("prompt=One sentence, please.",)))
    records = lines(out)
    assert stats.ok == len(expected(images))
    assert {r["path"]: r["caption"] for r in records} == expected(images)
    assert {r["target"] for r in records} == {f"space:{server.url}"}
    state = server.app[SPACE]
    assert state.invocations == len(records)  # one call per image
    assert set(state.inputs_seen) == {"One sentence, please."}


async def test_a_full_queue_is_back_pressure_never_a_final_error(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(space(latency=0.03, space_concurrency=1, space_queue_size=1))
    out = tmp_path / "out.jsonl"
    stats = await run(config(images, out, server, concurrency="fixed:6", retries=0))
    state = server.app[SPACE]
    assert state.queue_full > 0  # six in flight against room for two: the Space answered 503 "Queue is full"
    assert stats.ok == len(expected(images))
    assert stats.failed == 0  # with --retries 0: a full queue never spent one
    assert state.invocations == stats.ok


async def test_a_spent_quota_is_waited_out_and_every_image_ends_ok(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(space(latency=0.01, space_quota=240, space_gpu_duration=60, space_quota_reset=1.0))
    out = tmp_path / "out.jsonl"
    stats = await run(config(images, out, server, retries=0))
    state = server.app[SPACE]
    assert state.quota_refusals >= 1  # four calls per quota window, twelve images
    assert stats.ok == len(expected(images))
    assert stats.failed == 0
    assert state.invocations == stats.ok


async def test_a_quota_back_after_max_wait_stops_resumably_and_says_when(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(space(space_quota=180, space_gpu_duration=60, space_quota_reset=588.0))
    out = tmp_path / "out.jsonl"
    with pytest.raises(RunAborted) as stopped:
        await run(config(images, out, server, max_wait=60))
    assert stopped.value.kind == "quota"
    assert "comes back in 0:09:4" in str(stopped.value)  # 0:09:48, a second less if the clock ticked
    assert "run the same command then to resume" in str(stopped.value)
    records = lines(out)
    assert len(records) == 3
    assert all(r["status"] == "ok" for r in records)  # no image given up on: a rerun does the rest
    quota_back = await emulator(space())
    # Another emulator is another URL, so another target in the answers' fingerprints: keep the first one's.
    stats = await run(config(images, out, quota_back, max_wait=60, keep_stale=True))
    assert stats.ok == len(expected(images)) - 3
    assert stats.skipped == 3


async def test_the_same_error_for_every_image_stops_the_run_like_any_refusal(
    emulator: EmulatorFactory, tmp_path: Path
) -> None:
    generate(tmp_path / "many", REFUSAL_LIMIT + 10, seed=2)
    server = await emulator(space(fail_rate=1.0))
    out = tmp_path / "out.jsonl"
    with pytest.raises(RunAborted) as stopped:
        await run(config(tmp_path / "many", out, server, concurrency=4))
    assert stopped.value.kind == "refusals"
    assert "does not show it" in str(stopped.value)
    assert not [r for r in lines(out) if r["status"] == "error"]  # held, never written: the rerun retries them


async def test_a_private_space_gets_the_token_only_where_it_should(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(space(auth="protected"))
    token_file = tmp_path / "token"
    token_file.write_text(DEFAULT_TOKEN + "\n")
    out = tmp_path / "out.jsonl"
    stats = await run(config(images, out, server, token_file=token_file), token=Secret(DEFAULT_TOKEN))
    assert stats.ok == len(expected(images))
    # A token found in the environment is not sent to a host that is not a Space's own (*.hf.space).
    with pytest.raises(AuthError, match=r"goes only to a Space's own \*\.hf\.space host; --token-file"):
        await run(config(images, tmp_path / "again.jsonl", server), token=Secret(DEFAULT_TOKEN))
    assert server.log.count(401) == 1  # refused once, at GET /config: nothing else was tried


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchcap", *args]


def env() -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base["HF_HOME"] = "/nonexistent-batchcap-test"
    return base


async def test_the_commands_take_a_space(emulator: EmulatorFactory, images: Path, tmp_path: Path) -> None:
    server = await emulator(space(latency=0.01))
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(60):
        done = await anyio.run_process(
            cli("run", str(images), "--out", str(out), "--space", server.url, "--space-api", "/caption",
                "--space-input", "prompt=Describe it.", "--quiet"), env=env(), check=False)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert f"{len(expected(images))} ok" in done.stderr.decode()
    with anyio.fail_after(60):
        probed = await anyio.run_process(
            cli("check", str(images), "--space", server.url, "--probe", "3", "--json"), env=env(), check=False)
    assert probed.returncode == EXIT_OK, probed.stderr.decode()
    report = orjson.loads(probed.stdout)
    assert report["probe"]["ok"] == 3
    assert report["estimate"]["target"] == f"space:{server.url}"


async def test_several_endpoints_or_a_wrong_one_is_a_usage_error_that_lists_them(
    emulator: EmulatorFactory, images: Path, tmp_path: Path
) -> None:
    server = await emulator(space(space_apis=("caption", "describe")))
    with anyio.fail_after(60):
        done = await anyio.run_process(
            cli("run", str(images), "--out", str(tmp_path / "o.jsonl"), "--space", server.url, "--quiet"),
            env=env(), check=False)
    err = done.stderr.decode()
    assert done.returncode == EXIT_USAGE, err
    assert "2 endpoints that take an image and return text (/caption, /describe)" in err
    assert "--space-api" in err
    assert "Traceback" not in err
    assert server.app[SPACE].invocations == 0  # nothing was sent
    with anyio.fail_after(60):
        wrong = await anyio.run_process(
            cli("run", str(images), "--out", str(tmp_path / "p.jsonl"), "--space", server.url, "--space-api",
                "/nope", "--quiet"), env=env(), check=False)
    assert wrong.returncode == EXIT_USAGE
    assert "--space-api /nope" in wrong.stderr.decode()
    with anyio.fail_after(60):
        html = await emulator(EmulatorSettings(profile="endpoint"))
        not_gradio = await anyio.run_process(
            cli("run", str(images), "--out", str(tmp_path / "q.jsonl"), "--space", html.url, "--quiet"),
            env=env(), check=False)
    assert not_gradio.returncode == EXIT_ABORTED
    assert "a Gradio app" in not_gradio.stderr.decode()


async def test_bench_holds_a_space_beside_an_endpoint_and_says_when_its_quota_makes_it_unfit(
    emulator: EmulatorFactory, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchcap.bench import BenchSettings, resolve_targets, run_bench

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-hf-home"))
    endpoint = await emulator(EmulatorSettings(latency=0.01, name="endpoint"))
    zerogpu = await emulator(space(latency=0.01, space_quota=600, space_gpu_duration=60, space_quota_reset=588.0))
    targets = resolve_targets([f"endpoint={endpoint.url}/", f"space=space:{zerogpu.url}@/caption"],
                              api_base=endpoint.url, prices=["endpoint=0.60", "space=0"])
    settings = BenchSettings(targets=targets, images_dir=images, images=4, concurrency=(1, 2), requests=6,
                             warmup=1, duration=10.0, max_time=60.0, cold_start_timeout=10.0)
    with anyio.fail_after(60):
        result = await run_bench(settings)
    space_result = next(t for t in result.targets if t.name == "space")
    assert space_result.description == f"space:{zerogpu.url}@/caption"
    assert space_result.space_quota is not None
    assert space_result.space_quota.captions_before == 10  # 600 s of quota at 60 s a call
    assert "space ran out of its GPU quota after 10 captions, back in 0:09:4" in result.verdict
    assert "unfit for this folder size" in result.verdict
    assert any(s.stats.ok for s in space_result.steps)  # it was measured until the quota ran out
    from batchcap.bench.report import write_reports

    doc = orjson.loads(write_reports(result, tmp_path / "bench").json.read_bytes())
    quota = next(t for t in doc["targets"] if t["name"] == "space")["space_quota"]
    assert quota["captions_before"] == 10
    assert quota["retry_after_s"] > 580
