"""Prompts are templates: Jinja2 in a sandbox, with an undefined variable as an error, checked before any request.

    t = PromptTemplate.compile("tags", "List 5 tags for this {{ folder }} photo taken {{ exif.datetime }}.")
    t.variables          # frozenset({'folder', 'exif'})
    t.render({"folder": "cat", "exif": {"datetime": "2024:05:01 12:00:00", ...}, ...})

Why Jinja2: the template language people already write for chat templates and Hugging Face model cards,
with ``StrictUndefined`` (a typo is an error, not an empty string) and a sandbox (a prompt file from
somewhere else cannot reach Python objects; ``range`` is capped). Compiling checks every name the template
reads against the variables an image has (``batchcap.tasks.context``: folder, path, stem, sidecar,
exif.datetime / .model / .make, plus names a source declares), so a typo fails the command with exit 2
before the journal is touched, naming the variable. Values (sidecar text, file names) are never parsed as
template source, so ``{{`` inside a sidecar is just text.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from batchcap.errors import PromptError, UsageError
from batchcap.tasks.context import BUILTINS, EXIF_FIELDS

__all__ = ["MAX_PROMPT_CHARS", "PromptTemplate"]

#: A rendered prompt longer than this is refused for that image (a runaway loop, a huge sidecar).
MAX_PROMPT_CHARS = 100_000
_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
#: Variables known from the path alone (and a small sidecar read): a rerun decides without reading the image.
_PATH_ONLY = frozenset({"folder", "path", "stem", "sidecar"})


def _known(extra: Collection[str]) -> str:
    names = [*BUILTINS[:-1], *(f"exif.{f}" for f in EXIF_FIELDS), *sorted(extra)]
    return ", ".join(names)


@dataclass(frozen=True, slots=True, eq=False)
class PromptTemplate:
    """One task's prompt, compiled. ``static`` templates (no variables) are rendered once, here."""

    task: str
    source: str
    variables: frozenset[str]  #: the top-level names it reads
    template: Any  #: the compiled ``jinja2.Template``
    text: str | None  #: the rendered prompt when ``static``

    @property
    def static(self) -> bool:
        return self.text is not None

    @property
    def needs_exif(self) -> bool:
        return "exif" in self.variables

    @property
    def needs_sidecar(self) -> bool:
        return "sidecar" in self.variables

    @property
    def path_only(self) -> bool:
        """Rendered from the path alone (and the sidecar): a rerun can judge the answer before reading the file."""
        return self.variables <= _PATH_ONLY

    @classmethod
    def compile(cls, task: str, source: str, *, extra: Collection[str] = ()) -> PromptTemplate:
        """Parse and check ``source``; ``UsageError`` (exit 2) naming the task and the problem.

        ``extra``: names of per-image variables a source provides (``ImageJob.context``).
        """
        where = f"task {task}"
        try:
            ast = _ENV.parse(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            raise UsageError(f"{where}: the prompt is not a valid template"
                             + (f" (line {line})" if line else "") + f": {exc}") from None
        try:
            names = frozenset(meta.find_undeclared_variables(ast))
        except TemplateError as exc:  # e.g. an unknown filter
            raise UsageError(f"{where}: the prompt is not a valid template: {exc}") from None
        known = frozenset(BUILTINS) | frozenset(extra)
        for name in sorted(names):
            if name not in known:
                raise UsageError(f"{where}: the prompt uses {{{{ {name} }}}}, which is not a variable; "
                                 f"known: {_known(extra)}")
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            target = getattr(node, "node", None)
            if isinstance(target, nodes.Name) and target.name == "exif":
                field = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None),
                                                                                   "value", None)
                if field not in EXIF_FIELDS:
                    raise UsageError(f"{where}: the prompt uses exif.{field}, which is not an EXIF field batchcap "
                                     f"reads; known: {', '.join('exif.' + f for f in EXIF_FIELDS)}")
        try:
            template = _ENV.from_string(source)
        except TemplateError as exc:  # e.g. an unknown filter
            raise UsageError(f"{where}: the prompt is not a valid template: {exc}") from None
        text = None
        if not names:
            try:
                text = template.render()
            except Exception as exc:  # noqa: BLE001  any failure of a constant template is the user's to fix
                raise UsageError(f"{where}: the prompt template fails: {type(exc).__name__}: {exc}") from None
            if not text.strip():
                raise UsageError(f"{where}: the prompt is empty; give the question asked of every image")
        return cls(task, source, names, template, text)

    def render(self, context: Mapping[str, Any]) -> str:
        """The prompt for one image; ``PromptError`` (that image's error record) if the template fails on it."""
        if self.text is not None:
            return self.text
        try:
            text: str = self.template.render(context)
        except Exception as exc:  # noqa: BLE001  a filter on untrusted values can raise anything: one record
            raise PromptError(f"task {self.task}: the prompt template failed for this image: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if len(text) > MAX_PROMPT_CHARS:
            raise PromptError(f"task {self.task}: the prompt for this image is {len(text):,} characters, more than "
                              f"{MAX_PROMPT_CHARS:,} (a long sidecar?)")
        return text

    def __repr__(self) -> str:
        kind = "static" if self.static else f"variables={sorted(self.variables)}"
        return f"<PromptTemplate {self.task} {kind}>"
