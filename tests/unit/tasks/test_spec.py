"""Tasks from flags and profile tables: names, the default task, schema attachment, errors that name the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchcap.errors import UsageError
from batchcap.tasks.spec import TaskSettings, TaskSpec


def test_without_tasks_one_caption_task_asks_the_run_prompt() -> None:
    assert TaskSettings().specs(prompt="Describe it.") == (TaskSpec("caption", "Describe it."),)


def test_task_flags_in_order_and_schema_attached() -> None:
    s = TaskSettings(task=("tags=List tags.", "caption=Describe {{ folder }}."), schema=("tags=t.json",))
    assert s.specs(prompt="unused", max_tokens=64) == (
        TaskSpec("tags", "List tags.", 64, None, "t.json"),
        TaskSpec("caption", "Describe {{ folder }}.", 64, None, None),
    )


def test_profile_tables_and_picking_one_by_name() -> None:
    tables = {"tags": {"prompt": "List tags.", "max_tokens": 40, "schema": "/p/tags.json"},
              "short": {"prompt": "One word.", "temperature": 0.5}}
    assert [t.name for t in TaskSettings(tasks=tables).specs(prompt="x")] == ["tags", "short"]
    (picked,) = TaskSettings(task=("tags",), tasks=tables).specs(prompt="x")
    assert picked == TaskSpec("tags", "List tags.", 40, None, "/p/tags.json")
    (edited,) = TaskSettings(task=("tags=Other tags.",), tasks=tables).specs(prompt="x")
    assert (edited.prompt, edited.max_tokens, edited.schema) == ("Other tags.", 40, "/p/tags.json")


@pytest.mark.parametrize(("kw", "match"), [
    ({"task": ("bad name=x",)}, "task name 'bad name'"),
    ({"task": ("file_name=x",)}, "not file_name"),
    ({"task": ("tags",)}, r"--task tags: no prompt; give --task tags=PROMPT"),
    ({"schema": ("tags",)}, "NAME=FILE.json"),
    ({"tasks": {"t": {"prompt": "x", "colour": 1}}}, "unknown key 'colour'"),
    ({"tasks": {"t": {"max_tokens": 3}}}, r"\[tasks.t\] needs prompt"),
    ({"tasks": {"t": {"prompt": "x", "temperature": 5}}}, "between 0 and 2"),
])
def test_bad_settings_name_the_flag(kw: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        TaskSettings(**kw)  # type: ignore[arg-type]


def test_a_schema_for_no_task_and_a_task_twice_are_refused() -> None:
    with pytest.raises(UsageError, match="there is no task 'tags'"):
        TaskSettings(schema=("tags=t.json",)).specs(prompt="x")
    with pytest.raises(UsageError, match="given twice"):
        TaskSettings(task=("a=x", "a=y")).specs(prompt="x")


def test_flags_and_profile_keys_reach_the_tasks_group() -> None:
    from batchcap.config import RunConfig

    cfg = RunConfig.build(task=["tags=List tags."], keep_stale="true")
    assert cfg.tasks.task == ("tags=List tags.",)
    assert cfg.tasks.keep_stale is True


def test_the_shipped_tasks_profile_plans(tmp_path: Path) -> None:
    """configs/tasks.toml: two tasks, the schema path taken from the profile's folder, checked like a run."""
    from batchcap.config import profile_config
    from batchcap.run.plan import build_plan

    profile = Path(__file__).parents[3] / "configs" / "tasks.toml"
    cfg = profile_config(profile).validate()
    plan = build_plan(cfg)
    assert plan.names == ("caption", "tags")
    tags = plan.task("tags")
    assert tags.schema is not None
    assert Path(tags.schema.source) == profile.parent / "tags.schema.json"
    assert tags.template.static
    assert not plan.task("caption").template.static
    (only,) = build_plan(cfg.with_flat({"task": ("tags",)})).tasks
    assert only.name == "tags"
