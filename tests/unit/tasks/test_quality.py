"""Caption quality gates: each gate, the refusal list's false positives, boilerplate in bounded memory."""

from __future__ import annotations

import pytest

from batchcap.errors import BadCaption, ConfigError, PermanentError
from batchcap.tasks.quality import (
    GATES,
    BoilerplateCounter,
    QualitySettings,
    is_refusal,
    judge,
)

PROMPT = "Write a short, factual one-sentence caption for this image."


def test_a_good_caption_passes_every_gate() -> None:
    assert judge("A red car parked on a street.", finish_reason="stop", prompt=PROMPT) == ()


@pytest.mark.parametrize("caption", ["", " ", "\n\t ", "...", " \u201c\u201d "])
def test_empty_whitespace_or_punctuation_only_is_empty(caption: str) -> None:
    assert judge(caption) == ("empty",)


@pytest.mark.parametrize(
    "caption",
    [
        "I'm sorry, I can't help with that.",
        "i am sorry but I cannot describe people",
        "Sorry, I can't identify people in images.",
        "I cannot help with this request.",
        "I can\u2019t provide a description of this image.",
        "As an AI, I cannot see images.",
        "A photo. As an AI language model I can't say more.",
        "Unfortunately, I am unable to view the image.",
        "I apologize, but I can't assist with that.",
        '"I\'m sorry, I can\'t help with that."',
        "  - I'm unable to process images",
    ],
)
def test_refusals_are_flagged(caption: str) -> None:
    assert judge(caption, prompt=PROMPT) == ("refusal",)
    assert is_refusal(caption)


@pytest.mark.parametrize(
    "caption",
    [
        "A sign saying sorry",
        "The word SORRY painted on a brick wall",
        "A man holding a card that reads I cannot wait",
        "\u201cI\u2019m sorry\u201d written on a birthday card",
        '"I\'m sorry" in neon letters on a shop window',
        "A cannon on a hill at sunset",
        "An AI robot toy on a desk",
        "Iconic cannot-miss view of the bay",
        "Asana yoga pose on a beach",
        "sorrybot logo",
    ],
)
def test_captions_that_only_mention_the_words_are_not_refusals(caption: str) -> None:
    assert judge(caption, prompt=PROMPT) == ()


def test_refusal_list_can_be_replaced() -> None:
    settings = QualitySettings(refusal_starts=("Ich kann nicht",), refusal_anywhere=())
    assert judge("Ich kann nicht helfen", settings=settings) == ("refusal",)
    assert judge("I'm sorry, I can't help", settings=settings) == ()


def test_cut_off_is_finish_reason_length() -> None:
    assert judge("A dog running on the", finish_reason="length") == ("cut_off",)
    assert judge("A dog running on the beach.", finish_reason="stop") == ()
    assert judge("A dog running", finish_reason=None) == ()


@pytest.mark.parametrize(
    "caption",
    [
        PROMPT,
        PROMPT.upper().rstrip("."),
        "Write a short factual one-sentence caption for this image: here",
        "a short, factual one-sentence caption",
    ],
)
def test_a_caption_that_repeats_the_prompt(caption: str) -> None:
    assert judge(caption, prompt=PROMPT) == ("repeats_prompt",)


@pytest.mark.parametrize("caption", ["image", "A caption for this image of a cat on a sofa", "short"])
def test_words_shared_with_the_prompt_are_not_a_repeat(caption: str) -> None:
    assert judge(caption, prompt=PROMPT) == ()


def test_word_limits_are_off_unless_set() -> None:
    assert judge("cat") == ()
    assert judge(" ".join(["word"] * 500)) == ()
    bounded = QualitySettings(min_words=3, max_words=5)
    assert judge("cat", settings=bounded) == ("too_short",)
    assert judge("a cat on a mat", settings=bounded) == ()
    assert judge("a cat on a mat today, again", settings=bounded) == ("too_long",)


def test_each_gate_can_be_turned_off() -> None:
    off = QualitySettings(empty=False, refusal=False, cut_off=False, repeats_prompt=False, invalid_json=False)
    assert not off.any_gate
    assert judge("", settings=off) == ()
    assert judge("I'm sorry, I can't", finish_reason="length", prompt=PROMPT, settings=off) == ()
    assert judge(PROMPT, prompt=PROMPT, settings=off) == ()


def test_flags_come_in_gate_order() -> None:
    settings = QualitySettings(min_words=10)
    flags = judge("I cannot finish", finish_reason="length", settings=settings)
    assert flags == ("refusal", "cut_off", "too_short")
    assert [GATES.index(f) for f in flags] == sorted(GATES.index(f) for f in flags)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quality_retries": -1},
        {"on_bad_caption": "drop"},
        {"min_words": 0},
        {"min_words": 5, "max_words": 2},
        {"temperature_step": 3.0},
    ],
)
def test_bad_settings_name_the_flag(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        QualitySettings(**kwargs).validate()  # type: ignore[arg-type]


def test_temperature_steps_up_and_caps() -> None:
    s = QualitySettings(temperature_step=0.3)
    assert s.temperature_for(0.0, 0) == 0.0
    assert s.temperature_for(0.0, 1) == pytest.approx(0.3)
    assert s.temperature_for(0.0, 5) == 1.0
    assert s.temperature_for(1.5, 1) == 1.5  # never lowered
    assert QualitySettings(temperature_step=0).temperature_for(0.2, 3) == 0.2


def test_bad_caption_is_a_permanent_error_with_its_flags() -> None:
    exc = BadCaption("caption failed: refusal", flags=("refusal",), status=200)
    assert isinstance(exc, PermanentError)
    assert exc.flags == ("refusal",)
    assert exc.status == 200


def test_boilerplate_finds_the_sentence_that_covers_many_images() -> None:
    counter = BoilerplateCounter(capacity=64)
    for i in range(1000):
        if i % 10 == 0:
            counter.add("A picture of something.", f"img/{i}.jpg")
        else:
            counter.add(f"A photo of object number {i}.", f"img/{i}.jpg")
    top = counter.top(min_share=0.03)
    assert len(top) == 1
    hit = top[0]
    assert hit.caption == "A picture of something."
    # Misra-Gries: low by at most seen / (capacity + 1)
    assert 100 - 1000 // 65 <= hit.count <= 100
    assert hit.examples == ("img/0.jpg", "img/10.jpg", "img/20.jpg")
    assert len(counter._counts) <= 64


def test_boilerplate_ignores_case_and_spacing_and_small_shares() -> None:
    counter = BoilerplateCounter()
    for caption in ["A cat.", "a  CAT", "A cat!", "A dog"] + [f"thing {i}" for i in range(200)]:
        counter.add(caption)
    assert counter.top(min_share=0.03) == []
    top = counter.top(min_share=0.01)
    assert [(b.caption, b.count) for b in top] == [("A cat.", 3)]


def test_boilerplate_memory_is_bounded_by_capacity() -> None:
    counter = BoilerplateCounter(capacity=100)
    for i in range(20_000):
        counter.add(f"unique caption {i}")
    assert len(counter._counts) <= 100
    assert counter.top() == []
