"""The run's plan (tasks on targets, checked up front) and the planner's verdict per image and task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchcap.config import RunConfig
from batchcap.errors import UsageError
from batchcap.journal import encode_record, load_index
from batchcap.models import ImageJob, LoadedImage, Record
from batchcap.run.plan import Plan, Planner, build_plan

CHAT = {"api": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


def plan(**kw: Any) -> Plan:
    return build_plan(RunConfig.build(**{**CHAT, **kw}))


def image(path: str, data: bytes = b"pixels", digest: str = "ab" * 16) -> LoadedImage:
    return LoadedImage(ImageJob(path, f"/in/{path}", len(data)), data, "image/png", digest=digest)


def journal(tmp_path: Path, *records: Record) -> Path:
    j = tmp_path / "j.jsonl"
    j.write_bytes(b"".join(encode_record(r) for r in records))
    return j


def answer(p: Plan, path: str, task: str, prompt: str, **kw: Any) -> Record:
    fp = p.lanes[0].prints[task].fingerprint(prompt)
    return Record(path, "ok", caption="old", task=task, fingerprint=fp, digest="ab" * 16, ts=1.0, **kw)


def test_tasks_that_do_not_fit_the_target_fail_before_anything(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--api hf sends raw image bytes.*takes one task, not 2"):
        build_plan(RunConfig.build(model="m", task=("a=x", "b=y")))
    (tmp_path / "s.json").write_bytes(orjson.dumps({"type": "object"}))
    with pytest.raises(UsageError, match="cannot be asked for JSON"):
        build_plan(RunConfig.build(model="m", task=("a=x",), schema=(f"a={tmp_path / 's.json'}",)))
    with pytest.raises(UsageError, match=r"--sidecar-ext \.caption"):
        plan(task=("a=Uses {{ sidecar }}",), sidecar=True)
    assert plan(task=("a=Uses {{ sidecar }}",), sidecar=True, sidecar_ext=".caption").needs_sidecar


def test_a_raw_target_takes_its_one_task_and_ignores_the_prompt() -> None:
    raw = build_plan(RunConfig.build(model="m", prompt="one"))
    other = build_plan(RunConfig.build(model="m", prompt="two"))
    assert raw.lanes[0].prints["caption"].fingerprint("one") == other.lanes[0].prints["caption"].fingerprint("two")


def test_verdicts_kept_stale_new_final(tmp_path: Path) -> None:
    p = plan(task=("caption=Describe {{ folder }}.", "tags=List tags."))
    j = journal(tmp_path,
                answer(p, "cat/1.jpg", "caption", "Describe cat."),
                answer(p, "cat/1.jpg", "tags", "List other tags."),
                Record("cat/2.jpg", "error", task="tags", fingerprint=p.lanes[0].prints["tags"].fingerprint(
                    "List tags."), ts=1.0))
    planner = Planner(p, load_index(j), root="/in", copies=False)
    sent, records = planner.plan_image(image("cat/1.jpg"))
    assert records == []
    assert sent is not None
    assert [(a.task, a.prompt, a.stale) for a in sent.asks] == [("tags", "List tags.", True)]
    sent, _ = planner.plan_image(image("cat/2.jpg"))
    assert sent is not None
    assert [a.task for a in sent.asks] == ["caption"]
    assert planner.stale == {"tags": 1}
    keep = Planner(p, load_index(j), root="/in", keep_stale=True, copies=False)
    assert keep.plan_image(image("cat/1.jpg")) == (None, [])
    assert keep.kept_stale == {"tags": 1}


def test_the_scan_skips_a_path_only_when_every_task_is_answered(tmp_path: Path) -> None:
    p = plan(task=("caption=Describe {{ folder }}.",))
    j = journal(tmp_path, answer(p, "cat/1.jpg", "caption", "Describe cat."))
    planner = Planner(p, load_index(j), root=tmp_path)
    assert planner.skip("cat/1.jpg")
    assert not planner.skip("kitty/1.jpg")  # another folder: another question
    exif = plan(task=("caption=Taken {{ exif.datetime }}.",))
    assert not Planner(exif, load_index(j), root=tmp_path).skip("cat/1.jpg")  # the file must be read to judge


def test_an_answer_found_by_content_is_copied(tmp_path: Path) -> None:
    p = plan(task=("tags=List tags.",))
    j = journal(tmp_path, answer(p, "cat/1.jpg", "tags", "List tags.", flags=("cut_off",)))
    planner = Planner(p, load_index(j), root="/in")
    sent, (copy,) = planner.plan_image(image("kitty/1.jpg"))
    assert sent is None
    assert (copy.path, copy.task, copy.caption, copy.duplicate_of, copy.attempts, copy.flags) == (
        "kitty/1.jpg", "tags", "old", "cat/1.jpg", 0, ("cut_off",))
    assert planner.copied == 1
    other, records = planner.plan_image(image("dog/9.jpg", digest="cd" * 16))
    assert records == []
    assert other is not None


def test_a_prompt_error_is_that_tasks_record() -> None:
    p = plan(task=("a={{ stem | int(base=0) // 0 }}", "b=Fine."))
    planner = Planner(p, load_index(Path("/nonexistent.jsonl")), root="/in")
    sent, (rec,) = planner.plan_image(image("x.jpg"))
    assert (rec.task, rec.status, rec.error and rec.error.type) == ("a", "error", "PromptError")
    assert sent is not None
    assert [a.task for a in sent.asks] == ["b"]
