"""Prompt templates: sandboxed, strict, checked before any request, values never parsed as template source."""

from __future__ import annotations

import pytest

from batchcap.errors import PromptError, UsageError
from batchcap.tasks.template import PromptTemplate

CTX = {"folder": "cat", "path": "cat/1.jpg", "stem": "1", "sidecar": "tabby {{ 7*7 }}",
       "exif": {"datetime": "2024:05:01 12:00:00", "model": "Pixel 8", "make": "Google"}}


def test_a_plain_prompt_is_static_and_rendered_once() -> None:
    t = PromptTemplate.compile("caption", "Describe the image.")
    assert t.static
    assert t.path_only
    assert not t.needs_exif
    assert t.render({}) == "Describe the image."


def test_variables_render_and_values_stay_text() -> None:
    t = PromptTemplate.compile("c", "A {{ folder }} photo ({{ stem }}), {{ sidecar }}, {{ exif.model }} "
                               "{{ exif['make'] }} at {{ exif.datetime }}")
    assert t.variables == {"folder", "stem", "sidecar", "exif"}
    assert t.needs_exif
    assert t.needs_sidecar
    assert not t.path_only
    assert t.render(CTX) == "A cat photo (1), tabby {{ 7*7 }}, Pixel 8 Google at 2024:05:01 12:00:00"


@pytest.mark.parametrize(("source", "match"), [
    ("A {{ foldr }} photo", r"uses \{\{ foldr \}\}, which is not a variable; known: folder, path, stem, sidecar"),
    ("Lens {{ exif.lens }}", r"exif\.lens, which is not an EXIF field"),
    ("Broken {{ folder ", "not a valid template"),
    ("{{ folder | nosuchfilter }}", "not a valid template"),
    ("{{ '' }}", "the prompt is empty"),
])
def test_mistakes_fail_before_any_request_naming_them(source: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        PromptTemplate.compile("tags", source)


def test_extra_variables_from_the_source_are_known() -> None:
    t = PromptTemplate.compile("c", "Label: {{ label }}", extra=("label",))
    assert t.render({"label": "tabby"}) == "Label: tabby"


def test_the_sandbox_refuses_python_internals_per_image() -> None:
    t = PromptTemplate.compile("c", "{{ folder.__class__.__mro__ }}")
    with pytest.raises(PromptError, match="task c: the prompt template failed"):
        t.render(CTX)


def test_a_runaway_prompt_is_one_images_error() -> None:
    t = PromptTemplate.compile("c", "{{ sidecar * 200000 }}")
    with pytest.raises(PromptError, match="more than"):
        t.render(CTX)
