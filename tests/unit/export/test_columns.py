"""The per-task column mapping of the table exports."""

from __future__ import annotations

import pytest

from batchcap.errors import UsageError
from batchcap.export.columns import Column, answer_text, cell_text, row, table_columns


def test_one_caption_task_keeps_the_text_column() -> None:
    assert table_columns(["caption"], {}) == [Column("text", "caption")]
    assert table_columns(["caption"], {}, text_column="prompt") == [Column("prompt", "caption")]


def test_several_tasks_one_column_each_and_schema_fields() -> None:
    cols = table_columns(["caption", "tags"], {"tags": ["labels", "n"]})
    assert [c.name for c in cols] == ["caption", "tags", "tags.labels", "tags.n"]
    cols = table_columns(["caption", "tags"], {}, text_column="tags")
    assert [c.name for c in cols] == ["caption", "text"]
    with pytest.raises(UsageError, match="names the task"):
        table_columns(["caption", "tags"], {}, text_column="nope")
    with pytest.raises(UsageError, match="share the column 'text'"):
        table_columns(["text", "tags"], {}, text_column="tags")


def test_rows_and_cells() -> None:
    cols = table_columns(["caption", "tags"], {"tags": ["labels"]})
    answers = {"tags": {"caption": '{"labels":["a"]}', "data": {"labels": ["a"]}}}
    assert row(cols, answers) == {"caption": None, "tags": '{"labels":["a"]}', "tags.labels": ["a"]}
    assert [cell_text(v) for v in (None, "x", ["a"], 3, True)] == [None, "x", '["a"]', "3", "true"]


def test_answer_text_for_a_caption_file() -> None:
    assert answer_text({"caption": "a cat"}) == "a cat"
    assert answer_text({"caption": '["a","b"]', "data": ["a", "b"]}) == "a, b"
    assert answer_text({"caption": '{"tags":["a","b"]}', "data": {"tags": ["a", "b"]}}) == "a, b"
    assert answer_text({"caption": '{"t":["a"],"n":1}', "data": {"t": ["a"], "n": 1}}) == '{"t":["a"],"n":1}'
