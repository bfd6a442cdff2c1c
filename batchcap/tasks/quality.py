"""Caption quality gates: is this answer worth keeping, and is one sentence covering half the folder?

Pure: no I/O, no clock. The per-image attempt calls :func:`judge` on every 2xx caption; a caption with flags
is retried up to ``QualitySettings.quality_retries`` times, then kept as ``ok`` with ``"flags": [...]`` or
recorded as a ``BadCaption`` error (``on_bad_caption``). :class:`BoilerplateCounter` watches the captions of
the images that were sent (not their copies) for the end-of-run summary.

The gates, each a flag name (and a ``QualitySettings`` toggle):

``empty``           the caption is empty, whitespace or punctuation only (a model that gave up)
``refusal``         the caption is a refusal (:data:`REFUSAL_STARTS`, :data:`REFUSAL_ANYWHERE`)
``cut_off``         the service said ``finish_reason: "length"``: generation stopped at ``max_tokens``
``repeats_prompt``  the caption only repeats the prompt (a chat model echoing its instruction)
``too_short``       fewer words than ``min_words`` (off unless set: a one-word tag is a fine caption for some models)
``too_long``        more words than ``max_words`` (off unless set)
``invalid_json``    a task with a schema (issue 16) got a reply that is not JSON matching it (:func:`judge_json`)

Refusals are matched on a normalised caption (lower case, curly apostrophes made straight, whitespace
collapsed, leading quotes and punctuation dropped), by whole words:

* a caption that *starts* with one of :data:`REFUSAL_STARTS` ("I'm sorry", "I cannot", "As an AI", ...). A
  caption describes the picture, so it almost never starts in the first person; "A sign saying sorry" or
  "The word SORRY on a wall" do not start that way and pass.
* a caption that holds one of :data:`REFUSAL_ANYWHERE` anywhere: phrases no description of a picture contains
  ("as an AI language model", "I can't help with", ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from batchcap.errors import ConfigError
from batchcap.settings import parse_int, setting

if TYPE_CHECKING:
    from batchcap.tasks.schema import Schema

__all__ = [
    "DEFAULT_QUALITY",
    "GATES",
    "REFUSAL_ANYWHERE",
    "REFUSAL_STARTS",
    "Boilerplate",
    "BoilerplateCounter",
    "QualitySettings",
    "is_refusal",
    "judge",
    "judge_json",
    "normalise",
]

#: Every flag :func:`judge` can return, in the order it checks them.
GATES = ("empty", "refusal", "cut_off", "repeats_prompt", "too_short", "too_long", "invalid_json")

OnBadCaption = Literal["flag", "error"]


def _word(value: Any, name: str = "") -> str:
    return str(value).strip().lower()

#: A refusal when the (normalised) caption starts with one of these, as whole words.
REFUSAL_STARTS: tuple[str, ...] = (
    "i'm sorry",
    "i am sorry",
    "sorry, i",
    "sorry, but",
    "sorry but",
    "sorry i",
    "i apologize",
    "i apologise",
    "my apologies",
    "i cannot",
    "i can't",
    "i can not",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "i'm not allowed",
    "i do not have the ability",
    "i don't have the ability",
    "unfortunately, i",
    "unfortunately i",
    "as an ai",
    "as a language model",
)

#: A refusal wherever one of these appears: no description of a picture says them.
REFUSAL_ANYWHERE: tuple[str, ...] = (
    "as an ai language model",
    "as an ai model",
    "as an ai assistant",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "i'm not able to help",
    "i can't provide a description",
    "i cannot provide a description",
    "i'm unable to provide a description",
    "i am unable to provide a description",
)


def _phrase_pattern(phrases: tuple[str, ...], *, anchored: bool) -> re.Pattern[str]:
    """One regex per list, whole words: "i cannot" does not match "i cannoted", nor "sorry" "sorrybot"."""
    if not phrases:
        return re.compile(r"(?!)")
    alt = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"^(?:{alt})(?!\w)" if anchored else rf"(?<!\w)(?:{alt})(?!\w)")


_DEFAULT_STARTS = _phrase_pattern(REFUSAL_STARTS, anchored=True)
_DEFAULT_ANYWHERE = _phrase_pattern(REFUSAL_ANYWHERE, anchored=False)
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"
#: A caption that opens with a quotation which closes before more text: it describes written words
#: ("'I'm sorry' written on a card"), so the start list does not apply.
_QUOTED_START = re.compile(rf"^\s*[{_QUOTES}](?:[^{_QUOTES}]|(?<=\w)['\u2019](?=\w))+[{_QUOTES}]\s+\w")
_LEADING = re.compile(r"^[\W_]+")
_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, one space between words, no leading quotes or punctuation."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return _LEADING.sub("", " ".join(text.lower().split()))


@dataclass(frozen=True, slots=True)
class QualitySettings:
    """Which gates run and what happens to a caption that fails one. The defaults are the CLI's."""

    #: extra attempts for a caption that failed a gate
    quality_retries: int = setting(2, parse=parse_int)
    #: after the retries: keep it as ok with flags, or a BadCaption error
    on_bad_caption: OnBadCaption = setting("flag", parse=_word)
    min_words: int | None = setting(None, parse=parse_int)  #: ``too_short`` below this many words; None = off
    max_words: int | None = setting(None, parse=parse_int)  #: ``too_long`` above this many words; None = off
    empty: bool = setting(True, internal=True)
    refusal: bool = setting(True, internal=True)
    cut_off: bool = setting(True, internal=True)
    repeats_prompt: bool = setting(True, internal=True)
    invalid_json: bool = setting(True, internal=True)
    #: Chat targets: each quality retry raises the temperature by this much (capped at 1.0), so a model that
    #: answered deterministically badly gets a different draw. 0 = resend unchanged.
    temperature_step: float = setting(0.3, internal=True)
    refusal_starts: tuple[str, ...] = setting(REFUSAL_STARTS, internal=True)
    refusal_anywhere: tuple[str, ...] = setting(REFUSAL_ANYWHERE, internal=True)
    _starts: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _anywhere: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts, anywhere = _DEFAULT_STARTS, _DEFAULT_ANYWHERE
        if self.refusal_starts is not REFUSAL_STARTS:
            starts = _phrase_pattern(tuple(normalise(p) for p in self.refusal_starts), anchored=True)
        if self.refusal_anywhere is not REFUSAL_ANYWHERE:
            anywhere = _phrase_pattern(tuple(normalise(p) for p in self.refusal_anywhere), anchored=False)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_anywhere", anywhere)
        self.validate()

    def validate(self) -> QualitySettings:
        """Raise ConfigError naming the flag; return self (also run on construction)."""
        if not isinstance(self.quality_retries, int) or self.quality_retries < 0:
            raise ConfigError(f"--quality-retries must be a whole number >= 0 (got {self.quality_retries!r})")
        if self.on_bad_caption not in ("flag", "error"):
            raise ConfigError(f"--on-bad-caption must be flag or error (got {self.on_bad_caption!r})")
        for name in ("min_words", "max_words"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1 (got {value!r})")
        if self.min_words is not None and self.max_words is not None and self.min_words > self.max_words:
            raise ConfigError(f"--min-words {self.min_words} is above --max-words {self.max_words}")
        if not 0.0 <= self.temperature_step <= 1.0:
            raise ConfigError(f"temperature_step must be between 0 and 1 (got {self.temperature_step!r})")
        return self

    @property
    def any_gate(self) -> bool:
        """Whether :func:`judge` can flag anything at all (all off: the attempt may skip it)."""
        return (self.empty or self.refusal or self.cut_off or self.repeats_prompt or self.invalid_json
                or self.min_words is not None or self.max_words is not None)

    def temperature_for(self, base: float, quality_retry: int) -> float:
        """The temperature of the ``quality_retry``-th resend (0 = the first attempt) for a chat target."""
        if quality_retry <= 0 or self.temperature_step <= 0:
            return base
        return max(base, min(1.0, base + self.temperature_step * quality_retry))


DEFAULT_QUALITY = QualitySettings()


def is_refusal(caption: str, settings: QualitySettings = DEFAULT_QUALITY) -> bool:
    """Whether ``caption`` reads as a refusal by ``settings``' phrase lists (see the module docstring)."""
    return _refused(caption, normalise(caption), settings)


def _refused(caption: str, norm: str, settings: QualitySettings) -> bool:
    if settings._anywhere.search(norm) is not None:
        return True
    return settings._starts.match(norm) is not None and _QUOTED_START.match(caption) is None


def judge(
    caption: str,
    *,
    finish_reason: str | None = None,
    prompt: str | None = None,
    settings: QualitySettings = DEFAULT_QUALITY,
) -> tuple[str, ...]:
    """The gates ``caption`` fails, as flag names in :data:`GATES` order; ``()`` for a good caption.

    ``finish_reason`` is the service's (None when the protocol has none, e.g. image-to-text pipelines);
    ``prompt`` is the instruction sent with the image (None for targets that take no prompt).
    An empty caption is only ``empty``: the other gates have nothing to judge.
    """
    norm = normalise(caption)
    flags: list[str] = []
    if not norm:  # nothing but whitespace (or punctuation): nothing for the other gates to judge
        if settings.empty:
            return ("empty",)
        return ("cut_off",) if settings.cut_off and finish_reason == "length" else ()
    if settings.refusal and _refused(caption, norm, settings):
        flags.append("refusal")
    if settings.cut_off and finish_reason == "length":
        flags.append("cut_off")
    if settings.repeats_prompt and prompt and _repeats(norm, prompt):
        flags.append("repeats_prompt")
    if settings.min_words is not None or settings.max_words is not None:
        words = len(caption.split())
        if settings.min_words is not None and words < settings.min_words:
            flags.append("too_short")
        if settings.max_words is not None and words > settings.max_words:
            flags.append("too_long")
    return tuple(flags)


def judge_json(
    text: str,
    schema: Schema,
    *,
    finish_reason: str | None = None,
    settings: QualitySettings = DEFAULT_QUALITY,
) -> tuple[Any, tuple[str, ...]]:
    """A schema task's reply: ``(data, flags)``; ``data`` is the parsed object when it matches the schema.

    The text gates do not apply (a tag list has no sentence to judge); ``invalid_json`` and ``cut_off`` do.
    """
    data, problem = schema.check(text)
    flags: list[str] = []
    if problem is not None and settings.invalid_json:
        flags.append("invalid_json")
    if settings.cut_off and finish_reason == "length":
        flags.append("cut_off")
    return data, tuple(flags)


def _repeats(norm_caption: str, prompt: str) -> bool:
    """The caption is the prompt, the prompt plus a word or two, or a 4+ word stretch of it, and nothing else."""
    cap = _WORDS.findall(norm_caption)
    ask = _WORDS.findall(normalise(prompt))
    if not cap or not ask:
        return False
    if cap == ask:
        return True
    if len(cap) >= len(ask) and cap[: len(ask)] == ask and len(cap) - len(ask) <= 2:
        return True
    if len(cap) >= 4 and len(cap) < len(ask):
        n = len(cap)
        return any(ask[i : i + n] == cap for i in range(len(ask) - n + 1))
    return False


# ---------------------------------------------------------------------------------------------------------
# Boilerplate: one sentence for many distinct images


@dataclass(frozen=True, slots=True)
class Boilerplate:
    """One caption given to ``count`` distinct images (a lower bound), ``share`` of those seen."""

    caption: str
    count: int
    share: float
    examples: tuple[str, ...]


class BoilerplateCounter:
    """Counts captions with bounded memory (Misra-Gries heavy hitters) to find boilerplate.

    ``capacity`` captions are tracked at once (default 4,096: ~1-2 MB with their examples). Any caption given
    to more than ``1 / (capacity + 1)`` of the images (0.024% by default) is guaranteed to be tracked, and
    its count is low by at most ``seen / (capacity + 1)``, so a sentence that covers "more than a few percent"
    is always found and its count is near exact. Each add costs O(1) amortised.

    Feed it the captions of images that were *sent*: a copy captioned through dedupe carries its original's
    caption on purpose and is not boilerplate.
    """

    __slots__ = ("_counts", "_texts", "capacity", "examples_per_caption", "seen")

    def __init__(self, capacity: int = 4096, *, examples_per_caption: int = 3) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 (got {capacity})")
        self.capacity = capacity
        self.examples_per_caption = examples_per_caption
        self.seen = 0
        self._counts: dict[str, int] = {}
        self._texts: dict[str, tuple[str, list[str]]] = {}  # key -> (caption as first seen, example paths)

    def add(self, caption: str, path: str = "") -> None:
        """Count one image's caption (empty captions are left to the ``empty`` gate)."""
        key = " ".join(caption.lower().split()).rstrip(".!?")  # cheap: it runs once per caption written
        if not key:
            return
        self.seen += 1
        counts = self._counts
        if key in counts:
            counts[key] += 1
            examples = self._texts[key][1]
            if path and len(examples) < self.examples_per_caption:
                examples.append(path)
            return
        if len(counts) < self.capacity:
            counts[key] = 1
            self._texts[key] = (caption.strip(), [path] if path else [])
            return
        # Full: this caption and every tracked one lose one (Misra-Gries); those at zero leave.
        for k in list(counts):
            c = counts[k] - 1
            if c:
                counts[k] = c
            else:
                del counts[k]
                del self._texts[k]

    def top(self, *, min_share: float = 0.03, min_count: int = 3, limit: int = 5) -> list[Boilerplate]:
        """Captions given to at least ``min_count`` images and more than ``min_share`` of all, most first."""
        if not self.seen:
            return []
        floor = max(min_count, min_share * self.seen)
        hits = sorted(((c, k) for k, c in self._counts.items() if c >= floor and c > 1), reverse=True)[:limit]
        out = []
        for count, key in hits:
            text, examples = self._texts[key]
            out.append(Boilerplate(text, count, count / self.seen, tuple(examples)))
        return out

    def __repr__(self) -> str:
        return f"<BoilerplateCounter seen={self.seen} tracked={len(self._counts)}/{self.capacity}>"
