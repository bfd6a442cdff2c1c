"""Issue 16 end to end on loopback: several tasks per image, prompts from the image's context, answers that know
what was asked (kept, asked again when stale, copied by content), structured replies judged by jsonschema."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import orjson
import pytest

from batchcap.config import RunConfig
from batchcap.emulator import EmulatorSettings, RunningEmulator, chat_answer_for
from batchcap.errors import RunAborted, UsageError
from batchcap.run import run
from batchcap.source.samples import generate
from tests.conftest import MODEL, EmulatorFactory

CAPTION = "caption=Describe this {{ folder }} photo."
TAGS = "tags=List five tags for this image."


def pets(root: Path, n: int = 120) -> Path:
    """``n`` distinct images, half in cat/, half in dog/."""
    scratch = root / "scratch"
    folder = root / "pets"
    for i, path in enumerate(generate(scratch, n, seed=16)):
        dest = folder / ("cat" if i % 2 == 0 else "dog") / f"{i:03d}{path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, dest)
    shutil.rmtree(scratch)
    return folder


def cfg(server: RunningEmulator, folder: Path, out: Path, *tasks: str, **kw: Any) -> RunConfig:
    return RunConfig.build(input_dir=folder, out=out, api="openai", base_url=f"{server.url}/v1", model=MODEL,
                           concurrency=8, rate=None, timeout=10.0, task=tasks, **kw).validate()


def asked(server: RunningEmulator, status: int | None = None) -> int:
    """Chat requests answered (the run's one ``GET /v1/models`` for prices is not a question)."""
    return sum(1 for e in server.log.entries if e.kind == "chat" and (status is None or e.status == status))


def stale(notes: list[str]) -> list[str]:
    """The run's notes about stale answers (its price notes aside)."""
    return [n for n in notes if n.startswith("task ")]


def records(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]


def latest(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The answer that speaks for each (path, task): the last ok line, else the last line."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records(out):
        key = (rec["path"], rec["task"])
        if rec["status"] == "ok" or key not in best or best[key]["status"] != "ok":
            best[key] = rec
    return best


async def test_two_tasks_rerun_edit_and_rename(emulator: EmulatorFactory, tmp_path: Path) -> None:
    folder = pets(tmp_path)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(120):
        # Two tasks over 120 images: 240 requests, and each caption prompt names its image's folder.
        stats = await run(cfg(server, folder, out, CAPTION, TAGS))
        assert (stats.ok, stats.failed) == (240, 0)
        assert asked(server) == 240
        assert Counter(server.log.prompts()) == {"Describe this cat photo.": 60, "Describe this dog photo.": 60,
                                                  "List five tags for this image.": 120}
        answers = latest(out)
        assert len(answers) == 240
        for (path, task), rec in answers.items():
            data = (folder / path).read_bytes()
            prompt = f"Describe this {path.split('/')[0]} photo." if task == "caption" else TAGS.split("=", 1)[1]
            assert rec["caption"] == chat_answer_for(data, prompt)  # the answer to this image and this prompt
            assert len(rec["fingerprint"]) == 24
            assert len(rec["digest"]) == 32

        # The same command again: nothing is sent.
        stats = await run(cfg(server, folder, out, CAPTION, TAGS))
        assert asked(server) == 240
        assert (stats.ok, stats.failed, stats.skipped) == (0, 0, 240)

        # One task's prompt edited: exactly 120 requests, all of that task, and the run said so first.
        notes: list[str] = []
        stats = await run(cfg(server, folder, out, CAPTION, "tags=List three tags."), notes=notes.append)
        assert stale(notes) == ["task tags: prompt changed since 120 answers: asking again"]
        assert asked(server) == 360
        assert Counter(server.log.prompts()[240:]) == {"List three tags.": 120}
        assert stats.stale == {"tags": 120}
        assert stats.skipped == 120  # "already done": the captions, not the stale tags asked again

        # cat/ renamed kitty/: only the task whose rendered prompt changed is asked, only for those images.
        (folder / "cat").rename(folder / "kitty")
        stats = await run(cfg(server, folder, out, CAPTION, "tags=List three tags."))
        assert asked(server) == 420
        assert Counter(server.log.prompts()[360:]) == {"Describe this kitty photo.": 60}
        answers = latest(out)
        kitty = {key: rec for key, rec in answers.items() if key[0].startswith("kitty/")}
        assert len(kitty) == 120
        for (path, task), rec in kitty.items():
            if task == "tags":  # copied from the answer the same content got under cat/, no request
                assert rec["duplicate_of"] == "cat/" + path.split("/", 1)[1]
                assert rec["attempts"] == 0
            else:
                assert rec["caption"] == chat_answer_for((folder / path).read_bytes(), "Describe this kitty photo.")
        assert stats.copied == 60


async def test_keep_stale_keeps_old_answers(emulator: EmulatorFactory, tmp_path: Path) -> None:
    folder = pets(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(60):
        await run(cfg(server, folder, out, TAGS))
        notes: list[str] = []
        stats = await run(cfg(server, folder, out, "tags=Other words.", keep_stale=True), notes=notes.append)
    assert stale(notes) == ["task tags: prompt changed since 10 answers: kept (--keep-stale)"]
    assert asked(server) == 10
    assert stats.kept_stale == {"tags": 10}


async def test_max_images_counts_an_image_once_whatever_its_tasks(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """Issue 18's --max-images with two tasks: an image counts once (with its first task), here and on a rerun."""
    folder = pets(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(60), pytest.raises(RunAborted, match="image limit reached: 5 images"):
        await run(cfg(server, folder, out, CAPTION, TAGS, max_images=5))
    done = latest(out)
    assert len({path for path, _ in done}) == 5
    assert len(done) == 10  # each image with both its answers
    with anyio.fail_after(60), pytest.raises(RunAborted, match="image limit reached: 8 images"):
        await run(cfg(server, folder, out, CAPTION, TAGS, max_images=8))  # the 5 done count: 3 more
    assert (len(latest(out)), asked(server)) == (16, 16)


async def test_a_schema_task_retries_invalid_json_once(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """A server whose first answer per image is invalid JSON: every image ends with valid data, one retry each."""
    folder = pets(tmp_path, 20)
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                         "minItems": 2, "maxItems": 5},
                                                "indoor": {"type": "boolean"}},
              "required": ["tags", "indoor"], "additionalProperties": False}
    (tmp_path / "tags.json").write_bytes(orjson.dumps(schema))
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings(invalid_json_rate=1.0, seed=3))
    with anyio.fail_after(60):
        stats = await run(cfg(server, folder, out, "tags=Tags as JSON.", schema=(f"tags={tmp_path / 'tags.json'}",)))
    assert (stats.ok, stats.failed, stats.quality_retries) == (20, 0, 20)
    assert asked(server, 200) == 40  # one retry each, no more
    for rec in records(out):
        assert rec["task"] == "tags"
        assert "flags" not in rec
        jsonschema.validate(rec["data"], schema)  # the real validator agrees
        assert orjson.loads(rec["caption"]) == rec["data"]
    sent = [e.schema for e in server.log.entries if e.kind == "chat"]
    assert sent == [schema] * 40  # every request carried the schema


async def test_template_errors_and_raw_targets_fail_before_any_request(emulator: EmulatorFactory,
                                                                        tmp_path: Path) -> None:
    folder = pets(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with pytest.raises(UsageError, match=r"\{\{ foldr \}\}.*known: folder, path, stem, sidecar, exif.datetime"):
        await run(cfg(server, folder, out, "caption=A {{ foldr }} photo."))
    with pytest.raises(UsageError, match=r"exif\.lens"):
        await run(cfg(server, folder, out, "caption=Taken with {{ exif.lens }}."))
    raw = RunConfig.build(input_dir=folder, out=out, model=MODEL, api_base=f"{server.url}/hf-inference",
                          task=(CAPTION, TAGS)).validate()
    with pytest.raises(UsageError, match="takes one task"):
        await run(raw)
    assert asked(server) == 0
    assert not out.exists()


async def test_sidecar_and_exif_reach_the_prompt(emulator: EmulatorFactory, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0110] = "Pixel 8"  # Model
    exif[0x010F] = "Google"  # Make
    Image.new("RGB", (40, 30), "red").save(folder / "a.jpg", exif=exif.tobytes())
    Image.new("RGB", (30, 40), "blue").save(folder / "b.png")
    (folder / "a.txt").write_text("  tabby, {{ not a template }}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(60):
        await run(cfg(server, folder, out, "caption=[{{ stem }}] {{ sidecar }} / {{ exif.make }} {{ exif.model }}"))
    assert sorted(server.log.prompts()) == ["[a] tabby, {{ not a template }} / Google Pixel 8", "[b]  /  "]


async def test_check_counts_stale_answers(emulator: EmulatorFactory, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from batchcap.cli import main as cli_main

    folder = pets(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(60):
        await run(cfg(server, folder, out, CAPTION, TAGS))
    flags = ["check", str(folder), "--out", str(out), "--api", "openai", "--base-url", f"{server.url}/v1",
             "--model", MODEL, "--task", CAPTION, "--json"]
    assert await anyio.to_thread.run_sync(cli_main, [*flags, "--task", "tags=Other."]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["stale"]["by_task"] == {"tags": 12}
    assert report["stale"]["notes"] == ["task tags: prompt changed since 12 answers: a run asks them again"]
    assert await anyio.to_thread.run_sync(cli_main, [*flags, "--task", TAGS]) == 0
    assert orjson.loads(capsys.readouterr().out)["stale"]["answers"] == 0
    assert asked(server) == 24  # check sent nothing


async def test_check_counts_the_requests_run_then_makes_task_by_task(emulator: EmulatorFactory, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """One spine (issues 15 and 16): check's to_caption is the number of requests the run with the same flags then
    sends, with two tasks, after a run, and after one task's prompt changed; its bytes grow with the requests."""
    from batchcap.cli import main as cli_main

    folder = pets(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())

    async def check(*tasks: str) -> dict[str, Any]:
        flags = ["check", str(folder), "--out", str(out), "--api", "openai", "--base-url", f"{server.url}/v1",
                 "--model", MODEL, "--concurrency", "8", "--rate", "unlimited", "--timeout", "10", "--json"]
        assert await anyio.to_thread.run_sync(cli_main, [*flags, *(a for t in tasks for a in ("--task", t))]) == 0
        return dict(orjson.loads(capsys.readouterr().out))

    with anyio.fail_after(120):
        before = await check(CAPTION, TAGS)
        assert (before["to_caption"], before["images_to_caption"], before["already_done"]) == (24, 12, 0)
        await run(cfg(server, folder, out, CAPTION, TAGS))
        assert asked(server) == 24
        sent = sum(r["bytes_sent"] for r in records(out))
        assert abs(before["bytes_to_send"] - sent) <= 0.15 * sent, (before["bytes_to_send"], sent)
        done = await check(CAPTION, TAGS)
        assert (done["to_caption"], done["images_to_caption"], done["already_done"]) == (0, 0, 12)
        edited = await check(CAPTION, "tags=Other.")
        assert (edited["to_caption"], edited["images_to_caption"], edited["already_done"]) == (12, 12, 0)
        await run(cfg(server, folder, out, CAPTION, "tags=Other."))
        assert asked(server) == 24 + 12  # what check said


@pytest.mark.parametrize("manifest_version", [1, 2])
async def test_a_journal_from_before_tasks_keeps_working(emulator: EmulatorFactory, tmp_path: Path,
                                                         manifest_version: int) -> None:
    """Lines without task or fingerprint, and a manifest from before tasks (version 1: one config; version 2: a
    config per invocation, no tasks): today's command sends nothing again; a changed prompt asks every image
    again and says what changed."""
    folder = pets(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    base = {"input_dir": folder, "out": out, "api": "openai", "base_url": f"{server.url}/v1", "model": MODEL,
            "rate": None}
    with anyio.fail_after(60):
        await run(RunConfig.build(**base).validate())
    # What the journal and the manifest looked like before issue 16 (task, fingerprint, digest, invocations).
    old = []
    for rec in records(out):
        for key in ("task", "fingerprint", "digest"):
            rec.pop(key)
        old.append(orjson.dumps(rec) + b"\n")
    out.write_bytes(b"".join(old))
    manifest = out.with_name("out.manifest.json")
    doc = orjson.loads(manifest.read_bytes())
    doc = {k: v for k, v in doc.items() if k not in ("tasks", "specs")}
    if manifest_version == 1:
        doc = {k: v for k, v in doc.items() if k not in ("invocations", "manifest_version")}
    else:
        doc["invocations"] = [{k: v for k, v in inv.items() if k != "tasks"} for inv in doc["invocations"]]
    manifest.write_bytes(orjson.dumps(doc))
    with anyio.fail_after(60):
        stats = await run(RunConfig.build(**base).validate())
        assert (stats.ok, asked(server)) == (0, 10)
        notes: list[str] = []
        stats = await run(RunConfig.build(**base, prompt="Say what it is.").validate(), notes=notes.append)
    assert stale(notes) == ["task caption: prompt changed since 10 answers: asking again"]
    assert (stats.ok, asked(server)) == (10, 20)
    doc = orjson.loads(manifest.read_bytes())
    first, *later = doc["invocations"]
    assert "tasks" not in first  # the run from before tasks, kept as it was
    assert first["config"]["prompt"] != "Say what it is."
    assert [inv["tasks"]["caption"]["prompt"] for inv in later][-1] == "Say what it is."
    assert len(doc["specs"]["caption"]) == 2  # today's command, the changed prompt


async def test_a_tgi_server_is_asked_in_its_own_spelling(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """TGI refuses the OpenAI response_format (422); a run that finds TGI at /info sends TGI's spelling."""
    folder = pets(tmp_path, 4)
    (tmp_path / "s.json").write_bytes(orjson.dumps({"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}},
                                                    "required": ["kind"]}))
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings(profile="tgi"))
    with anyio.fail_after(60):
        stats = await run(cfg(server, folder, out, "kind=Cat or dog?", schema=(f"kind={tmp_path / 's.json'}",)))
    assert (stats.ok, stats.failed) == (4, 0)
    assert all(rec["data"]["kind"] in ("cat", "dog") for rec in records(out))
    assert server.log.count(422) == 0


def test_the_command_line_says_which_variable_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from batchcap.cli import main as cli_main

    folder = pets(tmp_path, 2)
    out = tmp_path / "out.jsonl"
    code = cli_main(["run", str(folder), "--out", str(out), "--api", "openai", "--base-url", "http://127.0.0.1:9/v1",
                     "--model", MODEL, "--task", "caption=A {{ foldr }} photo."])
    assert code == 2
    assert "task caption: the prompt uses {{ foldr }}, which is not a variable" in capsys.readouterr().err
    assert not out.exists()


async def test_a_datasets_columns_are_prompt_variables(emulator: EmulatorFactory, tmp_path: Path) -> None:
    """A parquet row's columns (written by ``datasets``) fill the prompt; a name the rows lack fails up front."""
    pytest.importorskip("datasets")
    from hubdata import png, write_parquet, write_tars

    data = tmp_path / "ds"
    write_parquet(data, [png(i) for i in range(6)], 2)
    out = tmp_path / "out.jsonl"
    server = await emulator(EmulatorSettings())
    with anyio.fail_after(60):
        stats = await run(cfg(server, data, out, "caption=Row {{ label }}: {{ text }}"))
    assert (stats.ok, stats.failed) == (6, 0)
    assert sorted(server.log.prompts()) == sorted(f"Row {i}: row {i} of shard {i // 3}" for i in range(6))
    with pytest.raises(UsageError, match=r"\{\{ lable \}\}.*exif.make, label, text"):
        await run(cfg(server, data, tmp_path / "o2.jsonl", "caption=Row {{ lable }}"))
    tars = tmp_path / "wds"
    write_tars(tars, [png(i) for i in range(4)], 1)
    with anyio.fail_after(60):
        stats = await run(cfg(server, tars, tmp_path / "o3.jsonl", "caption=Sample says {{ txt }}"))
    assert (stats.ok, stats.failed) == (4, 0)
    assert all(p.startswith("Sample says ") and len(p) > len("Sample says ") for p in server.log.prompts()[-4:])
